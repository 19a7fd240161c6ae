package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/role"
	entrun "github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/netlab"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/ipmi/ipmisimtest"
)

// The full loop with a real BMC: a machine known only by its BMC (an ipmi_sim whose
// chassis_control program is a QEMU VM) is taken to READY by the built-in discovery chain,
// through Prybar's own IPMI client (system GUID, boot device, power), DHCP, iPXE script, HTTP
// boot and the discovery agent; then two agent tasks write a marker to the VM's disk and read it
// back. See docs/discovery.md, "The full loop with a real BMC".
func TestIPMILoopBMCOnlyMachineToReady(t *testing.T) {
	netlab.NeedCommands(t, "ip", "qemu-system-x86_64", "dnsmasq", "curl", "ipmitool")
	nonce := randHex(t, 6)
	// The operator's read-back role: it requires the built-in agent-script, whose node-role
	// writes the marker (its script is set per node-role below). The page cache is dropped
	// first, so the line comes from the device rather than from the write's cached pages.
	roles := t.TempDir()
	readScript := "echo 3 > /proc/sys/vm/drop_caches\nread -r line < /dev/vda\necho \"read back: $line\"\n"
	rolesYAML := fmt.Sprintf(`roles:
  - name: il-disk-readback
    description: Read back the first line of the machine's first disk.
    executor: agent-task
    requires: [agent-script]
    timeout: 5m
    attributes:
      type: object
      properties:
        script: {type: string, default: %q}
        task_timeout: {type: string, format: duration, default: 2m}
`, readScript)
	if err := os.WriteFile(filepath.Join(roles, "il.yaml"), []byte(rolesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	lab := newDiscoLabWith(t, discoLabConfig{prefix: "il", env: []string{"PRYBAR_ROLES=" + roles}, flags: []string{"--rate-limit", "0"}})
	token := strings.TrimSpace(runCLI(t, "tokens", "create", "--db", lab.db, "--role", "admin", "il-operator"))

	// The machine behind the BMC. Its SMBIOS UUID is random; the BMC sends the same 16 bytes as
	// the SMBIOS table holds (first three fields little-endian), as BMCs that copy the host's
	// table do, so only the IPMI system GUID ties the agent's report to the machine record.
	vm := newLoopVM(t, lab)
	sim := ipmisimtest.Start(t, ipmisimtest.Options{GUID: smbiosBytes(t, vm.uuid), NS: lab.ns, Machine: vm.program})
	t.Cleanup(vm.off) // ipmi_sim does not stop what its chassis program started

	// As an operator would: a machine with nothing but its BMC, the built-in chain to
	// discovered-ready, and a write/read-back pair of agent tasks; then commit.
	var created struct {
		CreateMachine struct {
			Machine struct{ ID string }
			Errors  []any
		}
	}
	lab.gql(t, token, `mutation { createMachine(input: {name: "il-node1.lab.example"}) { machine { id } errors { code message } } }`, nil, &created)
	mid := created.CreateMachine.Machine.ID
	if mid == "" || len(created.CreateMachine.Errors) > 0 {
		t.Fatalf("createMachine: %+v", created)
	}
	var bmcOut struct {
		CreateBMC struct{ Errors []any }
	}
	lab.gql(t, token, `mutation($m: ID!, $port: Int!, $u: String!, $p: String!) {
		createBMC(input: {protocol: IPMI, address: "127.0.0.1", port: $port, username: $u, password: $p, machineID: $m}) { bmc { id } errors { code message } } }`,
		map[string]any{"m": mid, "port": sim.Port, "u": sim.User, "p": sim.Pass}, &bmcOut)
	if len(bmcOut.CreateBMC.Errors) > 0 {
		t.Fatalf("createBMC: %+v", bmcOut)
	}
	for _, r := range []string{"discovered-ready", "il-disk-readback"} {
		var b struct{ BindRole struct{ Errors []any } }
		lab.gql(t, token, `mutation($m: ID!, $r: String!) { bindRole(machineID: $m, role: $r) { nodeRole { id } errors { code message } } }`,
			map[string]any{"m": mid, "r": r}, &b)
		if len(b.BindRole.Errors) > 0 {
			t.Fatalf("bindRole %s: %+v", r, b)
		}
	}
	marker := "PRYBAR-IL-MARKER " + nonce + " machine {{.machine.id}}"
	writeScript := "echo \"" + marker + "\" > /dev/vda\nsync\necho wrote\n"
	var set struct{ SetAttribute struct{ Errors []any } }
	lab.gql(t, token, `mutation($nr: ID!, $v: Any) { setAttribute(nodeRoleID: $nr, path: "/script", value: $v) { errors { code message } } }`,
		map[string]any{"nr": fmt.Sprint(lab.nodeRoleID(t, mid, "agent-script")), "v": writeScript}, &set)
	if len(set.SetAttribute.Errors) > 0 {
		t.Fatalf("setAttribute: %+v", set)
	}
	var deps struct {
		Deployments struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	lab.gql(t, token, `{ deployments(where: {name: "system"}) { edges { node { id } } } }`, nil, &deps)
	if len(deps.Deployments.Edges) != 1 {
		t.Fatalf("system deployment: %+v", deps)
	}
	var commit struct{ CommitDeployment struct{ Errors []any } }
	start := time.Now()
	lab.gql(t, token, `mutation($d: ID!) { commitDeployment(id: $d) { errors { code message } } }`,
		map[string]any{"d": deps.Deployments.Edges[0].Node.ID}, &commit)
	if len(commit.CommitDeployment.Errors) > 0 {
		t.Fatalf("commitDeployment: %+v", commit)
	}

	m := lab.waitReady(t, vm, sim, mid, 8*time.Minute)
	t.Logf("commit → every node-role ACTIVE, machine READY: %v (TCG, BIOS, under the machine's load)", time.Since(start).Round(100*time.Millisecond))

	// Identity: one machine, the operator's, now carrying what the agent found.
	st := lab.open(t)
	ctx := context.Background()
	if nr, err := st.Client.NodeRole.Get(ctx, lab.nodeRoleID(t, mid, "pxe-discover")); err == nil {
		d, _ := nr.Wall["discovery"].(map[string]any)
		t.Logf("pxe-discover: PXE override + power on through ipmi_sim → agent check-in: %.1fs", d["seconds"])
	}
	if n, _ := st.Client.Machine.Query().Count(ctx); n != 1 {
		names, _ := st.Client.Machine.Query().Select(machine.FieldName).Strings(ctx)
		t.Errorf("%d machines %v: the agent's report must merge into the BMC's machine", n, names)
	}
	if n, _ := st.Client.Event.Query().Where(event.Kind("machine.discovered")).Count(ctx); n != 0 {
		t.Errorf("%d machine.discovered events, want none", n)
	}
	var macs []string
	for _, n := range m.Edges.Nics {
		macs = append(macs, n.MAC)
	}
	var disks []string
	for _, d := range m.Edges.Disks {
		disks = append(disks, fmt.Sprintf("%s:%d", d.Name, d.SizeBytes))
	}
	src, _ := m.Discovery["source"].(string)
	got := fmt.Sprintf("name=%s uuid=%s macs=%s disks=%s cpus=%d memory=%d source=%s", m.Name, m.UUID, strings.Join(macs, ","),
		strings.Join(disks, ","), m.CPUCount, m.MemoryBytes, src)
	want := fmt.Sprintf("name=il-node1.lab.example uuid=%s macs=%s disks=vda:%d cpus=2 memory=%d source=agent", vm.uuid, vm.mac, vm.diskSize, int64(1)<<30)
	if got != want {
		t.Errorf("machine\n got %s\nwant %s", got, want)
	}

	// The write reached the VM's disk (the image file on the host), and the read-back task,
	// which ran after it, saw it through the guest's block device.
	wantLine := strings.ReplaceAll(marker, "{{.machine.id}}", mid)
	img, err := os.ReadFile(vm.disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(img, []byte(wantLine+"\n")) {
		t.Errorf("disk image starts with %q, want %q", img[:min(len(img), 80)], wantLine)
	}
	out := lab.taskOutput(t, mid, "il-disk-readback")
	t.Logf("read-back task output: %q", out)
	if !strings.Contains(out, "read back: "+wantLine) {
		t.Errorf("read-back task output %q, want the marker %q", out, wantLine)
	}

	// Power and boot went through the BMC: ipmi_sim's chassis program was told PXE, then power
	// on, and it started the VM from the network; an independent client agrees the machine is on.
	ops := strings.Join(sim.Log(), ",")
	if i, j := strings.Index(ops, "set boot pxe"), strings.Index(ops, "set power 1"); i < 0 || j < i {
		t.Errorf("chassis operations %q: want set boot pxe, then set power 1", ops)
	}
	if ml := sim.MachineLog(); !strings.Contains(ml, "power on, booting from pxe") {
		t.Errorf("machine program log:\n%s", ml)
	}
	if st := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(st, "Chassis Power is on") {
		t.Errorf("ipmitool: %q", st)
	}
	if g := sim.Ipmitool(t, "mc", "guid"); !strings.Contains(g, vm.uuid) {
		t.Errorf("ipmitool mc guid does not show the VM's UUID %s:\n%s", vm.uuid, g)
	}
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// smbiosBytes is uuid as SMBIOS stores it (and QEMU's -smbios type=1,uuid= writes it): the first
// three fields little-endian, the rest in order; 32 hex digits for lan.conf's guid.
func smbiosBytes(t *testing.T, uuid string) string {
	b, err := hex.DecodeString(strings.ReplaceAll(uuid, "-", ""))
	if err != nil || len(b) != 16 {
		t.Fatalf("bad UUID %q", uuid)
	}
	b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	b[4], b[5] = b[5], b[4]
	b[6], b[7] = b[7], b[6]
	return hex.EncodeToString(b)
}

// loopVM is the machine behind the BMC: a QEMU VM (TCG, -cpu max, BIOS, 2 vCPUs, 1 GiB, one
// virtio NIC on the lab bridge, one virtio disk backed by a file) that only the BMC's chassis
// program starts and stops.
type loopVM struct {
	uuid, mac, disk, serial, program, dir string
	diskSize                              int64
}

func newLoopVM(t *testing.T, lab *discoLab) *loopVM {
	t.Helper()
	u := randHex(t, 16)
	// A random (version 4, RFC 4122 variant) UUID.
	u = u[:12] + "4" + u[13:16] + "a" + u[17:]
	vm := &loopVM{uuid: u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32], mac: "52:54:00:1c:00:01",
		dir: lab.dir, disk: filepath.Join(lab.dir, "vda.img"), serial: filepath.Join(lab.dir, "serial.log"),
		program: filepath.Join(lab.dir, "machine.sh"), diskSize: 64 << 20}
	f, err := os.Create(vm.disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(vm.diskSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	qemu := shellQuote(append(append([]string{"qemu-system-x86_64"}, discoQEMUOptions...), "-cpu", "max", "-smp", "2", "-m", "1024",
		"-display", "none", "-monitor", "none", "-serial", "file:"+vm.serial, "-no-reboot",
		"-daemonize", "-pidfile", filepath.Join(lab.dir, "qemu.pid"),
		"-smbios", "type=1,manufacturer=Prybar Lab,product=IPMI Loop VM,serial=IL-SN-0001,uuid="+vm.uuid,
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+vm.mac,
		"-drive", "file="+vm.disk+",format=raw,if=none,id=d0",
		"-device", "virtio-blk-pci,drive=d0,serial=il-disk0")...)
	// ipmi_sim runs this (in the lab's namespace, so QEMU reaches tap0) for every power change
	// and power query. -daemonize returns once the VM runs; the pid file is the power state.
	script := `#!/bin/sh
D='` + lab.dir + `'
running() { p=$(cat "$D/qemu.pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
stop() {
	p=$(cat "$D/qemu.pid" 2>/dev/null) || return 0
	kill "$p" 2>/dev/null
	for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$p" 2>/dev/null
	rm -f "$D/qemu.pid"
}
start() {
	boot=c
	[ "$1" = pxe ] && boot=n
	echo "$(date -u +%T.%N) power on, booting from $1"
	` + qemu + ` -boot order=$boot
}
case "$1" in
status) running ;;
on) running || start "$2" ;;
off) echo "$(date -u +%T.%N) power off"; stop ;;
reset) echo "$(date -u +%T.%N) reset"; stop; start "$2" ;;
*) echo "usage: $0 on|off|reset|status [bootdev]" >&2; exit 2 ;;
esac
`
	if err := os.WriteFile(vm.program, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return vm
}

// shellQuote quotes words for sh.
func shellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// off powers the VM off the way the BMC would (its chassis program), at cleanup.
func (vm *loopVM) off() { _ = exec.Command(vm.program, "off").Run() }

// gql posts a GraphQL request to serve, which listens only inside the lab's namespace, with curl
// run there, as an operator's client on the management network would.
func (lab *discoLab) gql(t *testing.T, token, query string, vars map[string]any, out any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := lab.ns.Command(ctx, "curl", "-sS", "--fail-with-body", "-H", "Content-Type: application/json",
		"-H", "Authorization: Bearer "+token, "--data-binary", "@-", "http://"+lab.ns.Addr+":8080/graphql")
	cmd.Stdin = bytes.NewReader(body)
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("graphql %s: %v: %s", query, err, data)
	}
	var resp struct {
		Data   json.RawMessage
		Errors []any
	}
	if err := json.Unmarshal(data, &resp); err != nil || len(resp.Errors) > 0 {
		t.Fatalf("graphql %s: %v %s", query, err, data)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			t.Fatal(err)
		}
	}
}

func (lab *discoLab) open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), lab.db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func atoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("id %q: %v", s, err)
	}
	return n
}

// nodeRoleID is the id of machine mid's node-role of role name.
func (lab *discoLab) nodeRoleID(t *testing.T, mid, name string) int {
	t.Helper()
	id, err := lab.open(t).Client.NodeRole.Query().Where(noderole.MachineID(atoi(t, mid)), noderole.HasRoleWith(role.Name(name))).OnlyID(context.Background())
	if err != nil {
		t.Fatalf("node-role %s of machine %s: %v", name, mid, err)
	}
	return id
}

// taskOutput is the agent task output of machine mid's node-role of role name (its wall).
func (lab *discoLab) taskOutput(t *testing.T, mid, name string) string {
	t.Helper()
	nr, err := lab.open(t).Client.NodeRole.Get(context.Background(), lab.nodeRoleID(t, mid, name))
	if err != nil {
		t.Fatal(err)
	}
	at, _ := nr.Wall["agent_task"].(map[string]any)
	out, _ := at["output"].(string)
	return out
}

// waitReady polls the database (bounded) until every node-role of machine mid is ACTIVE and the
// machine is READY. A node-role in ERROR ends the wait at once, with its runs' logs.
func (lab *discoLab) waitReady(t *testing.T, vm *loopVM, sim *ipmisimtest.Sim, mid string, timeout time.Duration) *ent.Machine {
	t.Helper()
	st := lab.open(t)
	ctx := context.Background()
	id := atoi(t, mid)
	var last string
	fail := func(why string) {
		t.Helper()
		var b strings.Builder
		nrs, _ := st.Client.NodeRole.Query().Where(noderole.MachineID(id)).WithRole().WithRuns(func(q *ent.RunQuery) { q.Order(ent.Asc(entrun.FieldID)) }).All(ctx)
		for _, nr := range nrs {
			fmt.Fprintf(&b, "%s %s %q\n", nr.Edges.Role.Name, nr.State, nr.Status)
			for _, r := range nr.Edges.Runs {
				fmt.Fprintf(&b, "  run %d %s %s\n%s\n", r.ID, r.Status, r.Error, r.Log)
			}
		}
		serial, _ := os.ReadFile(vm.serial)
		slog, _ := os.ReadFile(filepath.Join(lab.dir, "serve.log"))
		t.Fatalf("%s (last: %s)\nnode-roles:\n%s\nchassis: %q\nmachine program:\n%s\nserial console (tail):\n%s\nserve log (tail):\n%s",
			why, last, b.String(), sim.Log(), sim.MachineLog(), tailStr(serial, 3000), tailStr(slog, 4000))
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Second) {
		// The identity failure this loop is about shows here first: the agent's report matched
		// nothing and became a machine of its own, while pxe-discover waits for a check-in that
		// will never come.
		if others, _ := st.Client.Machine.Query().Where(machine.IDNEQ(id)).Select(machine.FieldName).Strings(ctx); len(others) > 0 {
			fail(fmt.Sprintf("the agent registered as another machine %v instead of the BMC's", others))
		}
		m, err := st.Client.Machine.Query().Where(machine.ID(id)).WithNics().WithDisks().WithNodeRoles(func(q *ent.NodeRoleQuery) { q.WithRole() }).Only(ctx)
		if err != nil {
			continue
		}
		active := 0
		var states []string
		for _, nr := range m.Edges.NodeRoles {
			states = append(states, nr.Edges.Role.Name+"="+string(nr.State))
			switch nr.State {
			case noderole.StateACTIVE:
				active++
			case noderole.StateERROR:
				// An automatic retry pending is the chain's own recovery (a slow boot under load);
				// an ERROR without one needs an operator, and ends the test.
				if nr.NextAttemptAt == nil {
					last = strings.Join(states, " ")
					fail("node-role " + nr.Edges.Role.Name + " in ERROR")
				}
			}
		}
		if s := fmt.Sprintf("machine %s: %s", m.State, strings.Join(states, " ")); s != last {
			t.Logf("%s", s)
			last = s
		}
		if len(m.Edges.NodeRoles) > 0 && active == len(m.Edges.NodeRoles) && m.State == machine.StateREADY {
			return m
		}
	}
	fail(fmt.Sprintf("not READY within %v", timeout))
	return nil
}
