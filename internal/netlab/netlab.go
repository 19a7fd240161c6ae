// Package netlab is the network-boot test laboratory: network namespaces with a bridge and a tap,
// a tiny Linux boot image (Debian's cloud kernel and a busybox initramfs whose /init prints a
// marker and powers off), and QEMU virtual machines that PXE-boot inside a namespace. Tests in
// several packages (boot HTTP, DHCP) use it; nothing here runs in production.
//
// Everything it creates is named after the caller's prefix and removed by t.Cleanup.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Need skips the test when what is unavailable (outside CI) and fails it under CI=true.
func Need(t testing.TB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is unavailable; CI must provide it (see .ci/run)", what)
	}
	t.Skipf("skipping: %s is unavailable here (CI provides it)", what)
}

// NeedCommands checks that each command is on PATH (Need semantics) and that we are root.
func NeedCommands(t testing.TB, cmds ...string) {
	t.Helper()
	Need(t, "root (network namespaces)", os.Geteuid() == 0)
	for _, c := range cmds {
		_, err := exec.LookPath(c)
		Need(t, c, err == nil)
	}
}

// NS is a network namespace with a bridge br0 (Addr/24) and a tap device tap0 on it, for a VM.
type NS struct {
	Name string
	Addr string // the bridge's address, e.g. 10.77.0.1
	CIDR string // e.g. 10.77.0.0/24

	clients int
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// NewNS creates namespace "<prefix>-<random>" with br0 = 10.77.0.1/24 and tap0 attached to it.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	ns := &NS{Name: prefix + "-" + hex.EncodeToString(b), Addr: "10.77.0.1", CIDR: "10.77.0.0/24"}
	run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns.Name).Run() })
	run(t, "ip", "-n", ns.Name, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns.Name, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", ns.Name, "addr", "add", ns.Addr+"/24", "dev", "br0")
	// A unique-local IPv6 prefix, so a router advertisement can be sent (see lab.md: iPXE waits
	// for IPv6 autoconfiguration otherwise).
	run(t, "ip", "-n", ns.Name, "addr", "add", "fd77::1/64", "dev", "br0", "nodad")
	run(t, "ip", "-n", ns.Name, "link", "set", "br0", "up")
	run(t, "ip", "-n", ns.Name, "tuntap", "add", "dev", "tap0", "mode", "tap")
	run(t, "ip", "-n", ns.Name, "link", "set", "tap0", "master", "br0")
	run(t, "ip", "-n", ns.Name, "link", "set", "tap0", "up")
	return ns
}

// NewClient creates a second namespace "<ns>-c<n>" whose eth0 is a veth plugged into br0, with
// addr/24 on it ("" leaves it unaddressed, for a DHCP client). Commands run there reach the
// server namespace the way a machine on the wire does, from their own address.
func (ns *NS) NewClient(t testing.TB, addr string) *NS {
	t.Helper()
	ns.clients++
	c := &NS{Name: fmt.Sprintf("%s-c%d", ns.Name, ns.clients), Addr: addr, CIDR: ns.CIDR}
	peer := fmt.Sprintf("veth%d", ns.clients)
	run(t, "ip", "netns", "add", c.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", c.Name).Run() })
	run(t, "ip", "-n", c.Name, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns.Name, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", c.Name)
	run(t, "ip", "-n", ns.Name, "link", "set", peer, "master", "br0")
	run(t, "ip", "-n", ns.Name, "link", "set", peer, "up")
	if addr != "" {
		run(t, "ip", "-n", c.Name, "addr", "add", addr+"/24", "dev", "eth0")
	}
	run(t, "ip", "-n", c.Name, "link", "set", "eth0", "up")
	return c
}

// Command returns cmd to run inside the namespace.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Start runs name inside the namespace in the background, output to logPath, stopped (SIGTERM,
// then SIGKILL) at cleanup.
func (ns *NS) Start(t testing.TB, logPath, name string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// CacheDir is where downloaded and built boot images are kept between runs: $PRYBAR_CACHE, else
// the user cache directory's prybar/netboot.
func CacheDir(t testing.TB) string {
	dir := os.Getenv("PRYBAR_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "prybar", "netboot")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Marker is what the test initramfs prints on the serial console once it runs.
const Marker = "PRYBAR-NETBOOT-MARKER"

var imageMu sync.Mutex

// Image returns a kernel and an initramfs for test boots, building them into the cache on first
// use: Debian's cloud kernel (apt-get download of linux-image-cloud-amd64's kernel package,
// unpacked with dpkg -x) and a busybox-static initramfs whose /init prints Marker and the kernel
// command line on ttyS0, then powers off.
func Image(t testing.TB) (kernel, initrd string) {
	t.Helper()
	imageMu.Lock()
	defer imageMu.Unlock()
	NeedCommands(t, "apt-get", "apt-cache", "dpkg", "busybox")
	cache := CacheDir(t)
	kernel = filepath.Join(cache, "vmlinuz")
	initrd = filepath.Join(cache, "initrd.cpio")
	if _, err := os.Stat(kernel); err != nil {
		fetchKernel(t, cache, kernel)
	}
	if _, err := os.Stat(initrd); err != nil {
		buildInitrd(t, initrd)
	}
	return kernel, initrd
}

func fetchKernel(t testing.TB, cache, dst string) {
	t.Helper()
	out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").Output()
	Need(t, "apt-cache depends linux-image-cloud-amd64", err == nil)
	var pkg string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	Need(t, "a linux-image-*-cloud-amd64 package", pkg != "")
	dl, err := os.MkdirTemp(cache, "dl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dl)
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = dl
	if b, err := cmd.CombinedOutput(); err != nil {
		Need(t, "apt-get download "+pkg+" ("+strings.TrimSpace(string(b))+")", false)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %v", pkg, debs)
	}
	run(t, "dpkg", "-x", debs[0], filepath.Join(dl, "x"))
	vm, _ := filepath.Glob(filepath.Join(dl, "x", "boot", "vmlinuz-*"))
	if len(vm) != 1 {
		t.Fatalf("no vmlinuz in %s", debs[0])
	}
	data, err := os.ReadFile(vm[0])
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, dst, data)
}

const initScript = `#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t proc proc /proc
{
  echo
  echo "` + Marker + `"
  echo "cmdline: $(/bin/busybox cat /proc/cmdline)"
} > /dev/ttyS0
/bin/busybox poweroff -f
`

func buildInitrd(t testing.TB, dst string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"bin", "dev", "proc", "sys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "init"), []byte(initScript), 0o755); err != nil {
		t.Fatal(err)
	}
	// busybox's cpio (Debian ships no cpio binary by default) writes the newc archive the kernel
	// unpacks.
	list := "init\nbin\nbin/busybox\ndev\nproc\nsys\n"
	cmd := exec.Command(bb, "cpio", "-o", "-H", "newc")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(list)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("busybox cpio: %v\n%s", err, errb.String())
	}
	writeAtomic(t, dst, out.Bytes())
}

func writeAtomic(t testing.TB, dst string, data []byte) {
	t.Helper()
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// Firmware of a VM.
type Firmware int

const (
	BIOS Firmware = iota
	UEFI
)

// OVMF files (Debian ovmf).
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VM is a QEMU machine booting from the network on ns's tap0.
type VM struct {
	MAC      string
	Firmware Firmware
	Serial   string // path of the serial console log
	cmd      *exec.Cmd
	done     chan struct{}
}

// StartVM boots a QEMU VM (TCG, -cpu max, virtio-net with QEMU's iPXE ROM) from the network in ns.
// It powers off by itself when the test initramfs has run (-no-reboot turns a reboot into an
// exit too); cleanup kills it otherwise.
func StartVM(t testing.TB, ns *NS, mac string, fw Firmware) *VM {
	t.Helper()
	dir := t.TempDir()
	vm := &VM{MAC: mac, Firmware: fw, Serial: filepath.Join(dir, "serial.log"), done: make(chan struct{})}
	args := []string{"qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "512",
		"-display", "none", "-monitor", "none", "-serial", "file:" + vm.Serial, "-no-reboot",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + mac, "-boot", "n"}
	if fw == UEFI {
		vars := filepath.Join(dir, "vars.fd")
		data, err := os.ReadFile(OVMFVars)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	f, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	vm.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	vm.cmd.Stdout, vm.cmd.Stderr = f, f
	if err := vm.cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	go func() { _ = vm.cmd.Wait(); f.Close(); close(vm.done) }()
	t.Cleanup(func() {
		_ = vm.cmd.Process.Kill()
		<-vm.done
	})
	return vm
}

// WaitMarker waits (bounded by timeout) until the VM printed Marker and exited; it returns the
// serial console text.
func (vm *VM) WaitMarker(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case <-vm.done:
	case <-time.After(timeout):
	}
	serial, _ := os.ReadFile(vm.Serial)
	if !bytes.Contains(serial, []byte(Marker)) {
		qlog, _ := os.ReadFile(filepath.Join(filepath.Dir(vm.Serial), "qemu.log"))
		t.Fatalf("the VM did not print %s within %v. serial console:\n%s\nqemu:\n%s", Marker, timeout, tail(serial, 3000), qlog)
	}
	return string(serial)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Dial connects from inside the namespace: the socket is created by a thread switched into it
// (setns), then used from anywhere, since a socket stays in the namespace it was made in. Tests
// use it to reach servers that listen only there (an ipmi_sim on the namespace's loopback)
// without a helper process per packet.
func (ns *NS) Dial(network, addr string) (net.Conn, error) {
	target, err := os.Open(filepath.Join("/var/run/netns", ns.Name))
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", ns.Name, err)
	}
	conn, dialErr := net.DialTimeout(network, addr, 5*time.Second)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and in the wrong namespace: Go ends it with this goroutine
		// instead of reusing it.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("setns back from %s: %w", ns.Name, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
