// Command prybar-agent is the discovery agent: it runs inside the discovery image (as its init's
// first user command), brings up the network, reports the machine's inventory to the Prybar
// server named on the kernel command line, then runs the tasks the server hands it until it is
// told to reboot, power off or kexec. It is a static Go binary (CGO_ENABLED=0).
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
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prybar/prybar/provision/agent"
)

func main() {
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
		setupImage(log, *modules)
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
		dhcp = bringUp(ctx, log, cl.MAC)
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
func setupImage(log *slog.Logger, dir string) {
	for _, m := range []struct{ src, dst, typ string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		_ = os.MkdirAll(m.dst, 0o755)
		_ = unix.Mount(m.src, m.dst, m.typ, 0, "")
	}
	order, err := os.ReadFile(filepath.Join(dir, "modules.order"))
	if err != nil {
		log.Warn("no module list", "err", err)
		return
	}
	for _, name := range strings.Fields(string(order)) {
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
	}
}

// bringUp waits for the boot NIC (or any NIC) and configures it by DHCP with u-root's dhclient;
// it returns the facts of the address it got.
func bringUp(ctx context.Context, log *slog.Logger, mac string) map[string]string {
	var ifname string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && ifname == ""; time.Sleep(100 * time.Millisecond) {
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
	facts := map[string]string{"interface": ifname}
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
