package main

import (
	"context"
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
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/netlab"
	"github.com/prybar/prybar/internal/store"
)

// bootLab is `prybar serve` running inside a fresh network namespace with one known machine, an
// asset directory holding the test kernel and initramfs as the discovery bootenv's files.
type bootLab struct {
	ns        *netlab.NS
	db        string
	machineID int
	mac       string
	ip        string
	bootURL   string
	dir       string
}

const labMAC = "52:54:00:be:e7:01"

func newBootLab(t *testing.T, extraServe ...string) *bootLab {
	t.Helper()
	netlab.NeedCommands(t, "ip", "qemu-system-x86_64")
	kernel, initrd := netlab.Image(t)
	dir := t.TempDir()
	lab := &bootLab{dir: dir, db: filepath.Join(dir, "prybar.db"), mac: labMAC, ip: "10.77.0.50"}
	assets := filepath.Join(dir, "assets")
	for src, dst := range map[string]string{kernel: "discovery/vmlinuz", initrd: "discovery/initrd"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(assets, dst)), 0o755))
		must(t, os.WriteFile(filepath.Join(assets, dst), data, 0o644))
	}

	// The machine and its reservation, written before the server starts (same database file).
	ctx := events.WithActor(context.Background(), "test")
	st, err := store.Open(ctx, lab.db)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("vm01.lab.example").Save(ctx)
		if err != nil {
			return err
		}
		lab.machineID = m.ID
		nw, err := tx.Network.Create().SetName("lab").SetCidr("10.77.0.0/24").SetRouter("10.77.0.1").Save(ctx)
		if err != nil {
			return err
		}
		if err := tx.NIC.Create().SetMAC(lab.mac).SetMachineID(m.ID).SetPxe(true).Exec(ctx); err != nil {
			return err
		}
		return tx.IPAllocation.Create().SetAddress(lab.ip).SetNetworkID(nw.ID).SetMachineID(m.ID).Exec(ctx)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	lab.ns = netlab.NewNS(t, "prybar-boot")
	// Ports inside our own namespace cannot collide with anyone's.
	lab.bootURL = "http://" + lab.ns.Addr + ":8080"
	args := append([]string{"env", "PRYBAR_TEST_MAIN=1", "PRYBAR_SCHEDULER=off", os.Args[0], "serve",
		"--db", lab.db, "--listen", lab.ns.Addr + ":8080", "--secret-key-file", filepath.Join(dir, "key"),
		"--boot-assets", assets, "--tftp-listen", lab.ns.Addr + ":69", "--log-level", "debug"}, extraServe...)
	lab.ns.Start(t, filepath.Join(dir, "serve.log"), args[0], args[1:]...)
	lab.waitHTTP(t)
	return lab
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitHTTP waits until the server answers inside the namespace (curl run there).
func (lab *bootLab) waitHTTP(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if exec.Command("ip", "netns", "exec", lab.ns.Name, "curl", "-sf", "-o", "/dev/null", lab.bootURL+"/healthz").Run() == nil {
			return
		}
	}
	log, _ := os.ReadFile(filepath.Join(lab.dir, "serve.log"))
	t.Fatalf("prybar serve did not come up in the namespace:\n%s", log)
}

// startRA runs dnsmasq for IPv6 router advertisements only (no DHCP): iPXE waits ~16 s for IPv6
// autoconfiguration unless one answers, and lifetime 0 offers no route.
func (lab *bootLab) startRA(t *testing.T) {
	t.Helper()
	netlab.NeedCommands(t, "dnsmasq")
	lab.ns.Start(t, filepath.Join(lab.dir, "ra.log"), "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces", "--pid-file="+filepath.Join(lab.dir, "ra.pid"),
		"--enable-ra", "--dhcp-range=::,constructor:br0,ra-only", "--ra-param=br0,10,0")
}

// startDnsmasq runs dnsmasq as the DHCP server of the namespace: the machine's reservation, a
// pool for others, and for iPXE clients (user class "iPXE") the machine's Prybar script URL —
// what Prybar's own DHCP server hands out, spelled out in dnsmasq's configuration.
func (lab *bootLab) startDnsmasq(t *testing.T) {
	t.Helper()
	netlab.NeedCommands(t, "dnsmasq")
	lab.ns.Start(t, filepath.Join(lab.dir, "dnsmasq.log"), "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces", "--log-dhcp", "--dhcp-leasefile="+filepath.Join(lab.dir, "leases"),
		"--pid-file="+filepath.Join(lab.dir, "dnsmasq.pid"),
		"--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
		"--dhcp-host="+lab.mac+","+lab.ip+",set:known",
		"--dhcp-userclass=set:ipxe,iPXE",
		// option 175/176: iPXE's no-pxedhcp, so it does not wait 3 s for a ProxyDHCP answer.
		"--dhcp-option-force=tag:ipxe,encap:175,176,1b",
		"--dhcp-boot=tag:!ipxe,undionly.kpxe,,"+lab.ns.Addr,
		"--dhcp-boot=tag:ipxe,tag:known,"+lab.bootURL+"/boot/ipxe?mac="+lab.mac,
		// iPXE waits ~16 s for IPv6 autoconfiguration unless a router advertisement answers; one
		// with router lifetime 0 ends the wait without offering a route.
		"--enable-ra", "--dhcp-range=::,constructor:br0,ra-only", "--ra-param=br0,10,0")
}

// bootSteps lists the machine's boot events as "kind what/file target".
func (lab *bootLab) bootSteps(t *testing.T) []string {
	t.Helper()
	st, err := store.Open(context.Background(), lab.db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Client.Event.Query().Where(event.MachineID(lab.machineID),
		event.Or(event.KindHasPrefix("boot."), event.KindHasPrefix("lease."), event.KindHasPrefix("dhcp."))).
		Order(ent.Asc(event.FieldSeq)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Each event is written when its transfer ends; the steps' order is that of their starts.
	start := func(e *ent.Event) time.Time {
		s, _ := e.Changes["start"].(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return e.Time // a DHCP decision: recorded as it is made
		}
		return t
	}
	sort.SliceStable(evs, func(i, j int) bool { return start(evs[i]).Before(start(evs[j])) })
	var out []string
	for _, e := range evs {
		s := e.Kind + " " + fmt.Sprint(e.Changes["what"])
		if a, ok := e.Changes["asset"]; ok {
			s += " " + fmt.Sprint(a)
		}
		if f, ok := e.Changes["file"]; ok {
			s += " " + fmt.Sprint(f)
		}
		s += " " + fmt.Sprint(e.Changes["status"])
		out = append(out, s)
	}
	return out
}

func testPXEBoot(t *testing.T, fw netlab.Firmware) {
	lab := newBootLab(t)
	lab.startDnsmasq(t)
	start := time.Now()
	vm := netlab.StartVM(t, lab.ns, lab.mac, fw)
	serial := vm.WaitMarker(t, 4*time.Minute)
	t.Logf("booted to the marker in %v", time.Since(start).Round(100*time.Millisecond))
	// The kernel ran with the command line of this machine's script.
	if want := fmt.Sprintf("prybar.machine=%d prybar.token=", lab.machineID); !strings.Contains(serial, want) {
		t.Errorf("serial console lacks %q:\n%s", want, serial)
	}
	got := strings.Join(lab.bootSteps(t), "\n")
	want := strings.Join([]string{
		"boot.http script 200",
		"boot.http asset discovery/vmlinuz 200",
		"boot.http asset discovery/initrd 200",
	}, "\n")
	if got != want {
		t.Errorf("the machine's boot events =\n%s\nwant\n%s", got, want)
	}
}

// A QEMU VM (BIOS) PXE-boots from prybar serve in a network namespace: DHCP (dnsmasq standing in
// until Prybar's DHCP is merged) → iPXE fetches its script over HTTP → kernel and initrd over
// HTTP → the initramfs prints the marker.
func TestPXEBootBIOS(t *testing.T) { testPXEBoot(t, netlab.BIOS) }

// The same with UEFI firmware (OVMF).
func TestPXEBootUEFI(t *testing.T) {
	_, err := os.Stat(netlab.OVMFCode)
	netlab.Need(t, "UEFI firmware "+netlab.OVMFCode+" (Debian ovmf)", err == nil)
	testPXEBoot(t, netlab.UEFI)
}

// From a client namespace at the machine's reserved address: tftp-hpa fetches undionly.kpxe
// byte-identical and is refused ../etc/passwd; curl gets a byte range of an asset. Each transfer
// is an event of that machine (found by its address).
func TestTFTPAndAssetsFromClientNamespace(t *testing.T) {
	netlab.NeedCommands(t, "tftp", "curl")
	_, err := os.Stat("/usr/lib/ipxe/undionly.kpxe")
	netlab.Need(t, "/usr/lib/ipxe/undionly.kpxe (Debian ipxe)", err == nil)
	lab := newBootLab(t)
	client := lab.ns.NewClient(t, lab.ip)
	ctx := context.Background()
	out := filepath.Join(lab.dir, "undionly.kpxe")
	if b, err := client.Command(ctx, "tftp", "-m", "binary", lab.ns.Addr, "-c", "get", "undionly.kpxe", out).CombinedOutput(); err != nil {
		t.Fatalf("tftp: %v\n%s", err, b)
	}
	want, _ := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	if got, _ := os.ReadFile(out); string(got) != string(want) || len(want) == 0 {
		t.Fatalf("undionly.kpxe over TFTP: %d bytes, want %d identical", len(got), len(want))
	}
	bad := filepath.Join(lab.dir, "passwd")
	b, _ := client.Command(ctx, "tftp", "-m", "binary", lab.ns.Addr, "-c", "get", "../etc/passwd", bad).CombinedOutput()
	if data, _ := os.ReadFile(bad); len(data) > 0 || !strings.Contains(string(b), "Error code") {
		t.Fatalf("../etc/passwd: client said %q and got %d bytes; want a refusal", b, len(data))
	}
	part := filepath.Join(lab.dir, "part")
	code, err := client.Command(ctx, "curl", "-sS", "-r", "100-1123", "-o", part, "-w", "%{http_code}", lab.bootURL+"/boot/assets/discovery/vmlinuz").Output()
	if err != nil || string(code) != "206" {
		t.Fatalf("curl range: %s %v", code, err)
	}
	kernel, _ := netlab.Image(t)
	full, _ := os.ReadFile(kernel)
	if got, _ := os.ReadFile(part); string(got) != string(full[100:1124]) {
		t.Fatalf("range: got %d bytes that are not bytes 100-1123 of the kernel", len(got))
	}
	// TFTP events are written after the transfer ends: give the server a moment (bounded).
	var got string
	wantSteps := "boot.tftp <nil> undionly.kpxe <nil>\nboot.tftp <nil> ../etc/passwd <nil>\nboot.http asset discovery/vmlinuz 206"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = strings.Join(lab.bootSteps(t), "\n"); got == wantSteps {
			break
		}
	}
	if got != wantSteps {
		t.Errorf("the machine's events =\n%s\nwant\n%s", got, wantSteps)
	}
}

// needDHCP: the VM tests below use Prybar's own DHCP server (provision/dhcp, `serve --dhcp`).
func needDHCP(t *testing.T) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "-h")
	cmd.Env = append(os.Environ(), "PRYBAR_TEST_MAIN=1")
	out, _ := cmd.CombinedOutput()
	// Not a missing peer but code not merged into this build yet (branch dhcp): skip, saying so,
	// even under CI. Once provision/dhcp is in, the flag exists and these tests always run.
	if !strings.Contains(string(out), "-dhcp") {
		t.Skip("skipping: this build has no DHCP server (serve --dhcp); it comes with provision/dhcp")
	}
}

// DHCP from Prybar itself (authoritative): the machine's reservation and, being iPXE, its script
// URL; then script, kernel, initrd over HTTP. The event log holds the DHCP step before them.
func TestPXEBootAuthoritative(t *testing.T) {
	needDHCP(t)
	lab := newBootLab(t, "--dhcp", "authoritative", "--dhcp-iface", "br0", "--boot-url", "http://10.77.0.1:8080")
	lab.startRA(t)
	vm := netlab.StartVM(t, lab.ns, lab.mac, netlab.BIOS)
	vm.WaitMarker(t, 4*time.Minute)
	steps := lab.bootSteps(t)
	t.Logf("the machine's steps:\n%s", strings.Join(steps, "\n"))
	firstDHCP, script := -1, -1
	for i, s := range steps {
		if firstDHCP < 0 && (strings.HasPrefix(s, "lease.") || strings.HasPrefix(s, "dhcp.")) {
			firstDHCP = i
		}
		if script < 0 && strings.HasPrefix(s, "boot.http script") {
			script = i
		}
	}
	if firstDHCP < 0 || script < firstDHCP {
		t.Errorf("the machine's events do not show DHCP before the script:\n%s", strings.Join(steps, "\n"))
	}
	if got := strings.Join(steps[max(script, 0):], "\n"); got != "boot.http script 200\nboot.http asset discovery/vmlinuz 200\nboot.http asset discovery/initrd 200" {
		t.Errorf("after DHCP the steps are\n%s\nwant script, kernel, initrd", got)
	}
}

// Proxy mode beside a real DHCP server: dnsmasq hands out the addresses (and no boot options),
// Prybar in proxy mode only the boot information. The VM boots with dnsmasq's address, and Prybar
// offers no address at all.
func TestPXEBootProxyBesideDnsmasq(t *testing.T) {
	needDHCP(t)
	lab := newBootLab(t, "--dhcp", "proxy", "--dhcp-iface", "br0", "--boot-url", "http://10.77.0.1:8080")
	netlab.NeedCommands(t, "dnsmasq")
	lab.ns.Start(t, filepath.Join(lab.dir, "dnsmasq.log"), "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces", "--log-dhcp", "--dhcp-leasefile="+filepath.Join(lab.dir, "leases"),
		"--pid-file="+filepath.Join(lab.dir, "dnsmasq.pid"),
		"--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
		"--enable-ra", "--dhcp-range=::,constructor:br0,ra-only", "--ra-param=br0,10,0")
	vm := netlab.StartVM(t, lab.ns, lab.mac, netlab.BIOS)
	vm.WaitMarker(t, 4*time.Minute)
	leases, _ := os.ReadFile(filepath.Join(lab.dir, "leases"))
	if !strings.Contains(string(leases), lab.mac+" 10.77.0.1") {
		t.Errorf("dnsmasq's leases lack the VM (%s):\n%s", lab.mac, leases)
	}
	st, err := store.Open(context.Background(), lab.db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.Client.Event.Query().Where(event.KindHasPrefix("lease.")).Count(context.Background()); err != nil || n != 0 {
		t.Errorf("Prybar in proxy mode recorded %d lease events (%v), want none", n, err)
	}
	got := lab.bootSteps(t)
	var httpSteps []string
	for _, s := range got {
		if strings.HasPrefix(s, "boot.http") {
			httpSteps = append(httpSteps, s)
		}
	}
	want := "boot.http script 200\nboot.http asset discovery/vmlinuz 200\nboot.http asset discovery/initrd 200"
	if strings.Join(httpSteps, "\n") != want {
		t.Errorf("the machine's boot steps =\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}
