package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/netlab"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agentapi"
)

// discoveryImage builds (or finds cached) the discovery image with `make discovery-image`'s
// builder; it returns the --boot-assets directory.
func discoveryImage(t *testing.T) string {
	t.Helper()
	netlab.NeedCommands(t, "apt-get", "apt-cache", "dpkg", "go")
	out := filepath.Join(netlab.CacheDir(t), "discovery-assets")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./provision/agent/mkimage", "-out", out, "-cache", netlab.CacheDir(t))
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the discovery image: %v\n%s", err, b)
	}
	return out
}

// discoLab is `prybar serve` with its own DHCP (authoritative, a discovery pool) in a fresh
// namespace, serving the discovery image.
type discoLab struct {
	ns      *netlab.NS
	dir, db string
}

func newDiscoLab(t *testing.T, setup func(ctx context.Context, tx *ent.Tx) error) *discoLab {
	t.Helper()
	return newDiscoLabWith(t, discoLabConfig{prefix: "disco", env: []string{"PRYBAR_SCHEDULER=off"}, setup: setup})
}

// discoLabConfig varies the lab: the namespace's name prefix, serve's extra environment (the
// annealer runs unless it says PRYBAR_SCHEDULER=off) and flags, records made before serve starts.
type discoLabConfig struct {
	prefix string
	env    []string
	flags  []string
	setup  func(ctx context.Context, tx *ent.Tx) error
}

func newDiscoLabWith(t *testing.T, cfg discoLabConfig) *discoLab {
	t.Helper()
	setup := cfg.setup
	netlab.NeedCommands(t, "ip", "qemu-system-x86_64", "dnsmasq")
	needDHCP(t)
	assets := discoveryImage(t)
	dir := t.TempDir()
	lab := &discoLab{dir: dir, db: filepath.Join(dir, "prybar.db")}
	ctx := events.WithActor(context.Background(), "test")
	st, err := store.Open(ctx, lab.db)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		nw, err := tx.Network.Create().SetName("lab").SetCidr("10.77.0.0/24").SetRouter("10.77.0.1").Save(ctx)
		if err != nil {
			return err
		}
		if err := tx.IPRange.Create().SetNetworkID(nw.ID).SetFirst("10.77.0.100").SetLast("10.77.0.150").SetPurpose(iprange.PurposeDHCP).Exec(ctx); err != nil {
			return err
		}
		if setup != nil {
			return setup(ctx, tx)
		}
		return nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	lab.ns = netlab.NewNS(t, cfg.prefix)
	args := append([]string{"PRYBAR_TEST_MAIN=1"}, cfg.env...)
	args = append(args, os.Args[0], "serve",
		"--db", lab.db, "--listen", lab.ns.Addr+":8080", "--secret-key-file", filepath.Join(dir, "key"),
		"--boot-assets", assets, "--dhcp", "authoritative", "--dhcp-iface", "br0", "--boot-url", "http://10.77.0.1:8080",
		"--log-level", "debug")
	lab.ns.Start(t, filepath.Join(dir, "serve.log"), "env", append(args, cfg.flags...)...)
	// iPXE waits ~16 s for IPv6 autoconfiguration unless a router advertisement answers.
	lab.ns.Start(t, filepath.Join(dir, "ra.log"), "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces", "--pid-file="+filepath.Join(dir, "ra.pid"),
		"--enable-ra", "--dhcp-range=::,constructor:br0,ra-only", "--ra-param=br0,10,0")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if exec.Command("ip", "netns", "exec", lab.ns.Name, "curl", "-sf", "-o", "/dev/null", "http://10.77.0.1:8080/healthz").Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			t.Fatalf("prybar serve did not come up:\n%s", log)
		}
	}
	return lab
}

// discoVM is the acceptance VM: TCG, -cpu max, 2 vCPUs, 1 GiB, SMBIOS serial and UUID, two
// virtio NICs (the first on the lab bridge), two virtio disks of different sizes.
type discoVM struct {
	macs   []string
	serial string
	uuid   string
	disks  []int64
	log    string
	start  time.Time
	cmd    *exec.Cmd
	// console is the serial console and firmware SeaBIOS's debug console (port 0x402), each
	// line stamped with its arrival: bootPhases splits the boot with them.
	console, firmware *consoleCapture
}

// discoQEMUOptions are the QEMU settings that keep the acceptance VM's shape but boot it faster
// under TCG (measured in docs/benchmarks.md, "Discovery boot phases"):
//   - q35: on the i440fx machine ("pc") the kernel's ACPI interrupt routing makes loading
//     virtio_pci take 0.5–2 s under TCG (the PCI link devices' AML); q35 takes ~40 ms.
//   - one TCG thread for both vCPUs: with a thread per vCPU on a loaded 2-core host, a vCPU
//     spinning on a lock the descheduled other one holds burns the time slice; the VM still
//     has 2 vCPUs.
var discoQEMUOptions = []string{"-machine", "q35", "-accel", "tcg,thread=single"}

func startDiscoVM(t *testing.T, lab *discoLab, disks []int64) *discoVM {
	t.Helper()
	vm := &discoVM{macs: []string{"52:54:00:d1:5c:01", "52:54:00:d1:5c:02"}, serial: "DISCO-SN-0001",
		uuid: "5a0c8f3e-1d2b-4e6f-8a9b-0c1d2e3f4a5b", disks: disks, log: filepath.Join(lab.dir, "serial.log")}
	serialSock, firmwareSock := consoleSocket(t, "serial.sock"), consoleSocket(t, "firmware.sock")
	vm.console = captureConsole(t, serialSock, vm.log)
	vm.firmware = captureConsole(t, firmwareSock, filepath.Join(lab.dir, "firmware.log"))
	args := append([]string{"qemu-system-x86_64"}, discoQEMUOptions...)
	args = append(args, "-cpu", "max", "-smp", "2", "-m", "1024",
		"-display", "none", "-monitor", "none", "-no-reboot",
		"-chardev", "socket,id=ser0,path="+serialSock, "-serial", "chardev:ser0",
		"-chardev", "socket,id=fw0,path="+firmwareSock, "-device", "isa-debugcon,iobase=0x402,chardev=fw0",
		"-smbios", "type=1,manufacturer=Prybar Lab,product=Disco VM,serial="+vm.serial+",uuid="+vm.uuid,
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+vm.macs[0],
		"-netdev", "user,id=n1,restrict=on",
		"-device", "virtio-net-pci,netdev=n1,mac="+vm.macs[1]+",romfile=",
		"-boot", "n")
	for i, size := range disks {
		img := filepath.Join(lab.dir, fmt.Sprintf("disk%d.img", i))
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=d%d", img, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=d%d,serial=disk%d", i, i))
	}
	vm.start = time.Now()
	vm.cmd = lab.ns.Start(t, filepath.Join(lab.dir, "qemu.log"), args[0], args[1:]...)
	return vm
}

// waitMachine polls the database until cond holds for a machine (bounded).
func (lab *discoLab) waitMachine(t *testing.T, vm *discoVM, timeout time.Duration, cond func(*ent.Machine) bool) *ent.Machine {
	t.Helper()
	st, err := store.Open(context.Background(), lab.db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		ms, err := st.Client.Machine.Query().WithNics().WithDisks().All(context.Background())
		if err != nil {
			continue
		}
		for _, m := range ms {
			if cond(m) {
				return m
			}
		}
	}
	serial, _ := os.ReadFile(vm.log)
	qlog, _ := os.ReadFile(filepath.Join(lab.dir, "qemu.log"))
	serial = append(serial, qlog...)
	slog, _ := os.ReadFile(filepath.Join(lab.dir, "serve.log"))
	t.Fatalf("no machine as expected within %v.\nserial console (tail):\n%s\nserve log (tail):\n%s", timeout, tailStr(serial, 4000), tailStr(slog, 3000))
	return nil
}

func tailStr(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Real VM, unknown machine: it PXE-boots from prybar serve (Prybar's DHCP, iPXE script, kernel
// and initrd over HTTP) into the discovery image, whose agent registers it: a DISCOVERED machine
// with exactly the VM's MACs, serial, UUID, CPU count, memory and disk sizes.
func TestDiscoveryVMUnknownMachine(t *testing.T) {
	lab := newDiscoLab(t, nil)
	vm := startDiscoVM(t, lab, []int64{64 << 20, 96 << 20})
	m := lab.waitMachine(t, vm, 5*time.Minute, func(m *ent.Machine) bool { return m.State == machine.StateDISCOVERED })
	took := time.Since(vm.start)
	// The phases, from the firmware's and the serial console's lines and the server's events.
	// Registration is the server's agent.registered event; the poll above adds up to 250 ms.
	phases := bootPhases(vm, lab.bootEvents(t, vm))
	for _, p := range phases {
		if strings.HasSuffix(p.name, "→ server: agent registered") {
			took = p.end
		}
	}
	table, bench := formatPhases(phases)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("VM start → registered: %v (TCG, BIOS; load average %s)\n%s", took.Round(100*time.Millisecond),
		strings.Join(strings.Fields(string(load))[:3], " "), table)
	if f := os.Getenv("PRYBAR_BENCH_OUT"); f != "" {
		out := fmt.Sprintf("discovery-vm-boot-to-registered %.1fs\ndiscovery-vm-load-average %s\n%s", took.Seconds(),
			strings.Join(strings.Fields(string(load))[:3], " "), bench)
		_ = os.WriteFile(f, []byte(out), 0o644)
	}
	var macs []string
	for _, n := range m.Edges.Nics {
		macs = append(macs, n.MAC)
	}
	sort.Strings(macs)
	var sizes []int64
	for _, d := range m.Edges.Disks {
		sizes = append(sizes, d.SizeBytes)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	got := fmt.Sprintf("name=%s macs=%s serial=%s uuid=%s cpus=%d memory=%d disks=%v", m.Name, strings.Join(macs, ","), m.Serial, m.UUID, m.CPUCount, m.MemoryBytes, sizes)
	want := fmt.Sprintf("name=d-525400d15c01.discovered macs=%s serial=%s uuid=%s cpus=2 memory=%d disks=%v", strings.Join(vm.macs, ","), vm.serial, vm.uuid, int64(1)<<30, vm.disks)
	if got != want {
		t.Errorf("discovered machine\n got %s\nwant %s", got, want)
	}
}

// Drift: the machine's records plan three disks; the VM boots with one disk fewer. The agent's
// report merges into the known machine (found by its MACs) and Machine.drift names the missing
// disk, with a machine.drift event.
func TestDiscoveryVMDrift(t *testing.T) {
	planned := []int64{64 << 20, 96 << 20, 128 << 20}
	var id int
	lab := newDiscoLab(t, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("vm-drift.lab.example").SetCPUCount(2).Save(ctx)
		if err != nil {
			return err
		}
		id = m.ID
		for _, mac := range []string{"52:54:00:d1:5c:01", "52:54:00:d1:5c:02"} {
			if err := tx.NIC.Create().SetMachineID(id).SetMAC(mac).Exec(ctx); err != nil {
				return err
			}
		}
		for i, size := range planned {
			if err := tx.Disk.Create().SetMachineID(id).SetName(fmt.Sprintf("vd%c", 'a'+i)).SetSizeBytes(size).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	vm := startDiscoVM(t, lab, planned[:2])
	m := lab.waitMachine(t, vm, 5*time.Minute, func(m *ent.Machine) bool { return m.ID == id && len(m.Drift) > 0 })
	got, _ := json.Marshal(m.Drift)
	want := `{"disks":{"extra":[],"found":2,"missing":[{"name":"vdc","sizeBytes":134217728}],"planned":3}}`
	if string(got) != want {
		t.Errorf("drift = %s\nwant %s", got, want)
	}
	st, err := store.Open(context.Background(), lab.db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, _ := st.Client.Machine.Query().Count(context.Background()); n != 1 {
		t.Errorf("%d machines; the known machine must be merged into, not duplicated", n)
	}
	if n, _ := st.Client.Event.Query().Where(event.Kind("machine.drift"), event.MachineID(id)).Count(context.Background()); n != 1 {
		t.Errorf("%d machine.drift events, want 1", n)
	}
	// The boot's timeline (Machine.boots): DHCP, script, kernel, initrd, the agent's check-in.
	boots, err := agentapi.Timeline(context.Background(), st.Client, id, 1)
	if err != nil || len(boots) != 1 {
		t.Fatalf("timeline: %v %v", boots, err)
	}
	var steps []string
	for _, s := range boots[0].Steps {
		d := ""
		if s.DurationMs != nil {
			d = fmt.Sprintf(" (%d ms)", *s.DurationMs)
		}
		t.Logf("  +%6.2fs %-18s %s%s", s.At.Sub(boots[0].Start).Seconds(), s.Kind, s.What, d)
		if s.Kind == "boot.http" || s.Kind == "agent.registered" {
			steps = append(steps, s.What)
		}
	}
	if got := strings.Join(steps, ","); got != "script,discovery/vmlinuz,discovery/initrd,agent check-in" {
		t.Errorf("the boot's HTTP and agent steps: %s", got)
	}
	if boots[0].Trace == "" || !strings.HasPrefix(boots[0].Steps[0].Kind, "lease.") && !strings.HasPrefix(boots[0].Steps[0].Kind, "dhcp.") {
		t.Errorf("the boot has trace %q and starts with %s; want a trace and the DHCP step first", boots[0].Trace, boots[0].Steps[0].Kind)
	}
}
