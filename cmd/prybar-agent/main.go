// Command prybar-agent is the discovery agent: it runs inside the discovery image (as its init's
// first user command), brings up the network, reports the machine's inventory to the Prybar
// server named on the kernel command line, then runs the tasks the server hands it until it is
// told to reboot, power off or kexec. It is a static Go binary (CGO_ENABLED=0).
//
// In the discovery image it is /init itself (process 1): it mounts the kernel file systems,
// starts itself again as the agent (`prybar-agent -image`) and reaps orphans. Skipping u-root's
// init saves its start-up work (about a second under TCG), and the image needs nothing else it
// does.
//
// Outside the image it can be pointed at a fixture tree and a server for tests:
//
//	prybar-agent -root testdata/qemu-vm -cmdline "prybar.url=http://… prybar.token=…" -once
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/prybar/prybar/provision/agent"
)

func main() {
	if os.Getpid() == 1 {
		initMain()
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "prybar-agent:", err)
		// As the image's only job, an agent that gives up leaves the machine for an operator:
		// sleep rather than exit (an init whose child exits may panic the kernel).
		if os.Getpid() == 1 || os.Getenv("PRYBAR_AGENT_IMAGE") == "1" {
			select {}
		}
		os.Exit(1)
	}
}

func run() error {
	root := flag.String("root", "/", "directory holding sys/ and proc/ to read the inventory from")
	cmdline := flag.String("cmdline", "", "kernel command line to take prybar.* from (default: /proc/cmdline)")
	image := flag.Bool("image", false, "running in the discovery image: mount, load modules, DHCP, obey power tasks")
	once := flag.Bool("once", false, "register, print the answer and exit")
	modules := flag.String("modules", "/lib/modules/prybar", "directory of kernel modules to load in order (modules.order) in -image mode")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if *image {
		os.Setenv("PRYBAR_AGENT_IMAGE", "1")
		mark("agent-start", "")
		mark("modules-loaded", setupImage(log, *modules))
	}
	text := *cmdline
	if text == "" {
		b, err := os.ReadFile(filepath.Join(*root, "proc/cmdline"))
		if err != nil {
			return err
		}
		text = string(b)
	}
	cl := agent.ParseCmdline(text)
	if cl.URL == "" || cl.Token == "" {
		return errors.New("no prybar.url / prybar.token on the kernel command line")
	}
	var dhcp map[string]string
	if *image {
		dhcp = bringUp(ctx, log, cl.MAC, parseIPConfig(text))
		mark("network-up", "")
	}
	inv, err := agent.Collect(*root)
	if err != nil {
		return err
	}
	inv.DHCP = dhcp
	c := &agent.Client{Base: cl.URL, Token: cl.Token, Log: log, HTTP: &http.Client{Timeout: 40 * time.Second}}
	reg, err := c.Register(ctx, agent.Register{Trace: cl.Trace, BootMAC: cl.MAC, Inventory: inv})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if *image {
		mark("registered", "")
	}
	log.Info("registered", "machine", reg.Machine, "name", reg.Name, "created", reg.Created, "since_start", time.Since(start).Round(time.Millisecond))
	fmt.Printf("PRYBAR-AGENT registered machine=%d name=%s\n", reg.Machine, reg.Name)
	if *once {
		return nil
	}
	r := &agent.Runner{Client: c, Log: log, Shell: shell()}
	if *image {
		r.Power = power
	}
	return r.Loop(ctx)
}

// shell is the script interpreter: /bin/sh when the image has one, else u-root's gosh.
func shell() []string {
	for _, s := range []string{"/bin/sh", "/bbin/gosh", "/bin/gosh"} {
		if _, err := os.Stat(s); err == nil {
			return []string{s, "-c"}
		}
	}
	return nil
}

// setupImage mounts what the inventory reads (u-root's init has mounted most of it already;
// a repeated mount fails harmlessly) and loads the image's modules in order: the cloud kernel's
// virtio drivers are modules, and virtio_ring must come before virtio, then virtio_pci, net, blk.
// It returns how long each module took ("virtio_ring=12ms …"): loading them is a visible part of
// the boot under TCG.
func setupImage(log *slog.Logger, dir string) string {
	for _, m := range []struct{ src, dst, typ string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		_ = os.MkdirAll(m.dst, 0o755)
		_ = unix.Mount(m.src, m.dst, m.typ, 0, "")
	}
	order, err := os.ReadFile(filepath.Join(dir, "modules.order"))
	if err != nil {
		log.Warn("no module list", "err", err)
		return ""
	}
	var took []string
	for _, name := range strings.Fields(string(order)) {
		t0 := time.Now()
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			log.Warn("module", "name", name, "err", err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			log.Warn("load module", "name", name, "err", err)
		}
		took = append(took, fmt.Sprintf("%s=%dms", strings.TrimSuffix(name, ".ko"), time.Since(t0).Milliseconds()))
	}
	return strings.Join(took, " ")
}

// bringUp waits for the boot NIC (or any NIC) and configures it: with the address the firmware's
// DHCP exchange gave iPXE when the command line carries it (prybar.ip, no second DHCP exchange),
// else by DHCP with u-root's dhclient. It returns the facts of the address it got.
func bringUp(ctx context.Context, log *slog.Logger, mac string, ipc *ipConfig) map[string]string {
	var ifname string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && ifname == ""; time.Sleep(20 * time.Millisecond) {
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback != 0 || len(i.HardwareAddr) != 6 {
				continue
			}
			if mac == "" || strings.EqualFold(i.HardwareAddr.String(), mac) {
				ifname = i.Name
				break
			}
		}
	}
	if ifname == "" {
		log.Error("no network interface appeared", "mac", mac)
		return nil
	}
	mark("nic-found", "")
	// u-root's init used to bring the loopback up; task scripts may use it.
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	facts := map[string]string{"interface": ifname}
	if ipc != nil {
		err := staticUp(ifname, ipc)
		if err == nil {
			facts["source"] = "ipxe"
			facts["address"] = ipc.addr.String()
			if ipc.gw != nil {
				facts["router"] = ipc.gw.String()
			}
			return facts
		}
		log.Warn("configuring the firmware's address failed; trying DHCP", "addr", ipc.addr, "err", err)
	}
	dhclient := ""
	for _, p := range []string{"/bbin/dhclient", "/bin/dhclient"} {
		if _, err := os.Stat(p); err == nil {
			dhclient = p
		}
	}
	if dhclient == "" {
		log.Error("no dhclient in the image")
		return nil
	}
	for attempt := 1; attempt <= 5; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, dhclient, "-ipv6=false", "-timeout", "5", "-retry", "3", ifname).CombinedOutput()
		cancel()
		if err == nil {
			break
		}
		log.Warn("dhclient", "attempt", attempt, "err", err, "out", string(out))
	}
	facts["source"] = "dhcp"
	if i, err := net.InterfaceByName(ifname); err == nil {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				facts["address"] = ipn.String()
			}
		}
	}
	return facts
}

// ipConfig is the boot NIC's address from the command line: the discovery bootenv passes iPXE's
// DHCP result as prybar.ip=${ip}/${netmask} prybar.gw=${gateway}.
type ipConfig struct {
	addr *net.IPNet
	gw   net.IP
}

// parseIPConfig reads prybar.ip (ADDR/MASK, the mask dotted or a prefix length) and prybar.gw;
// nil when there is no usable address (iPXE expands an unset setting to nothing).
func parseIPConfig(cmdline string) *ipConfig {
	var c ipConfig
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "prybar.ip":
			a, m, ok := strings.Cut(v, "/")
			ip := net.ParseIP(a).To4()
			if !ok || ip == nil || ip.IsUnspecified() {
				return nil
			}
			var mask net.IPMask
			if mip := net.ParseIP(m).To4(); mip != nil {
				mask = net.IPMask(mip)
			} else if n, err := strconv.Atoi(m); err == nil && n > 0 && n <= 32 {
				mask = net.CIDRMask(n, 32)
			}
			if ones, bits := mask.Size(); bits != 32 || ones == 0 {
				return nil
			}
			c.addr = &net.IPNet{IP: ip, Mask: mask}
		case "prybar.gw":
			if gw := net.ParseIP(v).To4(); gw != nil && !gw.IsUnspecified() {
				c.gw = gw
			}
		}
	}
	if c.addr == nil {
		return nil
	}
	return &c
}

// staticUp sets the link up with c's address and, when there is a router, a default route.
func staticUp(ifname string, c *ipConfig) error {
	if c.gw != nil && !c.addr.Contains(c.gw) {
		return fmt.Errorf("router %s is outside %s", c.gw, c.addr)
	}
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: c.addr}); err != nil {
		return fmt.Errorf("address: %w", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("link up: %w", err)
	}
	if c.gw != nil {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: c.gw}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
	}
	return nil
}

// mark prints a boot milestone with the kernel's uptime on the console: the discovery test (and an
// operator reading the serial console) splits the boot into phases with them.
func mark(phase, detail string) {
	up := "?"
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		up, _, _ = strings.Cut(string(b), " ")
	}
	if detail != "" {
		detail = " " + detail
	}
	fmt.Printf("PRYBAR-AGENT phase=%s uptime=%s%s\n", phase, up, detail)
}

// initMain runs the image as process 1: it mounts the kernel file systems, gives the console to
// the agent, starts it (`prybar-agent -image`, this same binary) and reaps every orphan the
// agent's tasks leave. It never returns: process 1 exiting panics the kernel.
func initMain() {
	for _, m := range []struct{ src, dst, typ string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"}, {"tmpfs", "/tmp", "tmpfs"}, {"tmpfs", "/run", "tmpfs"}} {
		_ = os.MkdirAll(m.dst, 0o755)
		_ = unix.Mount(m.src, m.dst, m.typ, 0, "")
	}
	// The kernel gives process 1 /dev/console only when the initramfs has the node; with devtmpfs
	// mounted it exists now.
	if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup3(int(f.Fd()), fd, 0)
		}
	}
	mark("init", "")
	os.Setenv("PATH", "/bbin:/bin:/ubin:/usr/bin:/usr/sbin:/sbin")
	os.Setenv("HOME", "/")
	cmd := exec.Command("/proc/self/exe", "-image")
	cmd.Args[0] = "prybar-agent" // the u-root busybox picks the command by argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "prybar-agent init: starting the agent:", err)
	}
	agent := -1
	if cmd.Process != nil {
		agent = cmd.Process.Pid
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		if pid == agent {
			fmt.Fprintf(os.Stderr, "prybar-agent init: the agent ended (%v); the machine waits for an operator\n", ws)
		}
	}
}

// power carries out a power task once its result is delivered.
func power(kind string) error {
	unix.Sync()
	switch kind {
	case agent.KindReboot:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	case agent.KindPoweroff:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case agent.KindKexec:
		// A kernel loaded earlier (by a task running kexec -l) is executed.
		return unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC)
	}
	return fmt.Errorf("unknown power action %s", kind)
}
