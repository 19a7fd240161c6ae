// Package ipmisimtest runs a real OpenIPMI ipmi_sim BMC for tests, so that IPMI code is
// exercised against an implementation that nobody in this repository wrote (the embedded
// go-ipmi simulator in package ipmisim shares its protocol code with the client).
//
// Each Sim gets its own temporary directory holding a generated lan.conf, bmc.emu and a
// chassis_control shell script. ipmi_sim asks that script for the power state and boot device
// and tells it every change; the script keeps them in files and appends every "set" to a log,
// so tests can assert what reached the "hardware" and in which order.
//
// With Options.Machine the chassis drives a real machine: the script runs that program to
// power it on (with the boot device ipmi_sim holds) or off and asks it whether it is running,
// so a QEMU VM started by it is powered and PXE-booted through the BMC like a server. With
// Options.NS ipmi_sim (and so the machine it starts) runs inside a test network namespace.
package ipmisimtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/netlab"
	"github.com/prybar/prybar/internal/testenv"
	"github.com/prybar/prybar/provision/bmc"
)

// Credentials every Sim accepts (user id 2, admin privilege).
const (
	User     = "admin"
	Password = "password"
)

// Sim is one running ipmi_sim process listening on 127.0.0.1 (of its namespace).
type Sim struct {
	Host string // always 127.0.0.1
	Port int
	User string
	Pass string
	Dir  string // temp dir with configs, state files and ipmi_sim's output
	GUID string // the system GUID as lan.conf spells it: 32 hex digits, bytes in the order sent

	ns   *netlab.NS
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Options tune a Sim.
type Options struct {
	// PowerOn starts the simulated machine powered on (default off). Ignored with Machine.
	PowerOn bool
	// GUID is the system GUID ipmi_sim answers Get System GUID with: 32 hex digits, the bytes in
	// the order they are sent (DefaultGUID when empty).
	GUID string
	// NS runs ipmi_sim inside this network namespace, on 127.0.0.1 port 623 there (a fresh
	// namespace has every port free). Readiness is probed from inside it; Sim.Ipmitool runs there.
	NS *netlab.NS
	// Machine is a program standing for the hardware behind the BMC. The chassis script runs
	// `MACHINE on BOOTDEV` on power on (BOOTDEV is ipmi_sim's boot device: pxe, default, ...),
	// `MACHINE off` on power off and ACPI shutdown, `MACHINE reset BOOTDEV` on reset, and answers
	// ipmi_sim's power query with `MACHINE status` (exit 0: on). It must return promptly
	// (daemonise what it starts): ipmi_sim waits for the chassis script.
	Machine string
}

// DefaultGUID is the system GUID of a Sim started without Options.GUID.
const DefaultGUID = "a123456789abcdefa123456789abcdef"

// Available reports whether ipmi_sim is installed.
func Available() bool {
	_, err := exec.LookPath("ipmi_sim")
	return err == nil
}

// Start launches ipmi_sim on a free UDP port and stops it when the test ends. When ipmi_sim is
// missing the test is skipped on a developer machine (it comes from a system package, Debian:
// openipmi) and fails under CI=true (testenv.Require).
func Start(t testing.TB, opts ...Options) *Sim {
	t.Helper()
	bin := testenv.LookPath(t, "ipmi_sim", "openipmi")
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	// The free-port probe can race with other processes; a failed start is retried on a
	// new port rather than failing the test.
	var lastErr error
	for try := 0; try < 3; try++ {
		s, err := start(t, bin, o)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("ipmisimtest: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, o Options) (_ *Sim, err error) {
	port := 623
	if o.NS == nil {
		if port, err = freeUDPPort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "ipmisim-*")
	if err != nil {
		return nil, err
	}
	launched := false
	defer func() {
		if err != nil && !launched {
			os.RemoveAll(dir) // once launched, the cleanup registered below owns dir
		}
	}()
	guid := o.GUID
	if guid == "" {
		guid = DefaultGUID
	}
	if len(guid) != 32 || strings.Trim(strings.ToLower(guid), "0123456789abcdef") != "" {
		return nil, fmt.Errorf("GUID %q: want 32 hex digits", guid)
	}
	s := &Sim{Host: "127.0.0.1", Port: port, User: User, Pass: Password, Dir: dir, GUID: guid, ns: o.NS, done: make(chan struct{})}
	power := "0"
	if o.PowerOn {
		power = "1"
	}
	files := map[string]string{
		"lan.conf":    lanConf(port, filepath.Join(dir, "chassis_control.sh"), guid),
		"bmc.emu":     bmcEmu,
		"power":       power + "\n",
		"boot":        "default\n",
		"ops.log":     "",
		"chassis.log": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "chassis_control.sh"), []byte(chassisScript(dir, o.Machine)), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "ipmi_sim.out"))
	if err != nil {
		return nil, err
	}
	// -n: no console on stdin (we have none); -s: keep ipmi_sim's persisted state in our dir
	// instead of /var/lib, so parallel tests and users do not share state.
	args := []string{bin, "-n", "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bmc.emu"), "-s", filepath.Join(dir, "state")}
	if o.NS != nil {
		args = append([]string{"ip", "netns", "exec", o.NS.Name}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start ipmi_sim: %w", err)
	}
	s.cmd = cmd
	launched = true
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "ipmi_sim.out")); err == nil && len(b) > 0 {
				t.Logf("ipmi_sim output:\n%s", b)
			}
			t.Logf("ipmisimtest: chassis log: %q", s.Log())
			if m := s.read("machine.log"); m != "" {
				t.Logf("ipmisimtest: machine program output:\n%s", m)
			}
		}
		os.RemoveAll(dir)
	})
	if err := s.waitReady(5 * time.Second); err != nil {
		s.stop()
		b, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.out"))
		return nil, fmt.Errorf("ipmi_sim on port %d not ready: %v; output: %s", port, err, b)
	}
	return s, nil
}

// stop terminates ipmi_sim (SIGTERM, then SIGKILL) and waits for it.
func (s *Sim) stop() {
	s.once.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
			return
		case <-time.After(2 * time.Second):
		}
		_ = s.cmd.Process.Kill()
		<-s.done
	})
}

// Stop ends ipmi_sim before the test ends, e.g. to test an unreachable BMC. Idempotent.
func (s *Sim) Stop() { s.stop() }

// waitReady sends RMCP presence pings until ipmi_sim answers: the process starting is not
// the socket being bound, and a test's first request racing the bind would time out.
func (s *Sim) waitReady(max time.Duration) error {
	deadline := time.Now().Add(max)
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("ipmi_sim exited")
		default:
		}
		var (
			conn net.Conn
			err  error
		)
		if s.ns != nil {
			conn, err = s.ns.Dial("udp", s.Addr())
		} else {
			conn, err = net.Dial("udp", s.Addr())
		}
		if err != nil {
			return err
		}
		_ = conn.SetDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = conn.Write(ping)
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		conn.Close()
		if err == nil && n >= 8 && buf[8] == 0x40 { // ASF presence pong
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no RMCP pong within %s", max)
}

// Addr returns "127.0.0.1:port".
func (s *Sim) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Endpoint returns the bmc.Endpoint of this simulator.
func (s *Sim) Endpoint() bmc.Endpoint {
	return bmc.Endpoint{Protocol: "ipmi", Address: s.Host, Port: s.Port, Username: s.User, Password: s.Pass}
}

// Power returns the simulated machine's power as the chassis script holds it: "on" or "off".
func (s *Sim) Power() string {
	if strings.TrimSpace(s.read("power")) == "1" {
		return "on"
	}
	return "off"
}

// BootDevice returns the boot device ipmi_sim last set through the chassis script, in
// ipmi_sim's words: "default" (no override), "pxe", "none", ...
func (s *Sim) BootDevice() string { return strings.TrimSpace(s.read("boot")) }

// Log returns every "set" the chassis script received, oldest first, e.g. "set power 1",
// "set boot pxe", "set reset 1".
func (s *Sim) Log() []string { return lines(s.read("ops.log")) }

// ChassisLog returns every call of the chassis script, reads included ("get power", ...).
func (s *Sim) ChassisLog() []string { return lines(s.read("chassis.log")) }

// MachineLog returns what the machine program (Options.Machine) printed.
func (s *Sim) MachineLog() string { return s.read("machine.log") }

// SetPower changes the simulated machine's power behind the BMC's back, like a person at the
// power button would.
func (s *Sim) SetPower(on bool) {
	v := "0\n"
	if on {
		v = "1\n"
	}
	_ = os.WriteFile(filepath.Join(s.Dir, "power"), []byte(v), 0o644)
}

// Ipmitool runs ipmitool against this simulator as an independent client (lanplus, cipher
// suite 3: without -C ipmitool spends ~10 s probing suites ipmi_sim lacks). It fails the test
// if ipmitool is missing or exits non-zero, and returns its standard output.
func (s *Sim) Ipmitool(t testing.TB, args ...string) string {
	t.Helper()
	testenv.LookPath(t, "ipmitool", "ipmitool")
	ctx := context.Background()
	if s.ns != nil {
		ctx = context.WithValue(ctx, nsKey{}, s.ns.Name)
	}
	out, err := Ipmitool(ctx, s.Host, s.Port, s.User, s.Pass, args...)
	if err != nil {
		t.Fatalf("ipmitool %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Ipmitool runs `ipmitool -I lanplus -C 3 -H host -p port -U user -P pass args...` with a
// 20 s cap and returns its standard output. It is exported for any IPMI endpoint on this
// machine, e.g. an ipmisim BMC.
func Ipmitool(ctx context.Context, host string, port int, user, pass string, args ...string) (string, error) {
	bin, err := exec.LookPath("ipmitool")
	if err != nil {
		return "", fmt.Errorf("ipmitool not installed (apt-get install ipmitool): %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	full := append([]string{bin, "-I", "lanplus", "-C", "3", "-N", "1", "-R", "2", "-H", host, "-p", strconv.Itoa(port), "-U", user, "-P", pass}, args...)
	if ns, _ := ctx.Value(nsKey{}).(string); ns != "" {
		full = append([]string{"ip", "netns", "exec", ns}, full...)
	}
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// nsKey carries the namespace Sim.Ipmitool runs ipmitool in.
type nsKey struct{}

func (s *Sim) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, name))
	return string(b)
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// lanConf is the minimum ipmi_sim needs for one RMCP+ LAN channel (Debian ships no example).
// Auth types include "none" and "straight" so that any client ipmitool mode works.
func lanConf(port int, script, guid string) string {
	auths := "none md2 md5 straight"
	return fmt.Sprintf(`name "prybar"
set_working_mc 0x20
startlan 1
  addr 127.0.0.1 %d
  priv_limit admin
  allowed_auths_callback %[2]s
  allowed_auths_user %[2]s
  allowed_auths_operator %[2]s
  allowed_auths_admin %[2]s
  guid %[6]s
endlan
chassis_control "%[3]s 0x20"
user 2 true "%[4]s" "%[5]s" admin 10 %[2]s
`, port, auths, script, User, Password, strings.ToLower(guid))
}

const bmcEmu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
mc_enable 0x20
`

// chassisScript answers ipmi_sim's chassis_control protocol:
//
//	SCRIPT 0x20 get power boot  ->  "power:0|1" and "boot:<dev>" lines
//	SCRIPT 0x20 set power 1     ->  state file "power" := 1 (likewise boot, reset)
//
// An ACPI soft shutdown ("set shutdown 1") powers off, as a cooperative OS would; reset does
// not change power and is only logged. Every call goes to chassis.log, every set
// to ops.log; writes go through a temp file and rename so a reader never sees a torn file.
//
// With a machine program (Options.Machine) power changes also run it, and the power state is
// what `machine status` says: a VM that stopped by itself reads as off, as on a real chassis.
// Its output goes to machine.log and its stdin is /dev/null: what it leaves running must not
// hold the pipe ipmi_sim reads the script's answer from.
func chassisScript(dir, machine string) string {
	return fmt.Sprintf(`#!/bin/sh
D='%s'
M='%s'
echo "$*" | cut -d' ' -f2- >> "$D/chassis.log"
shift
op="$1"; shift
case "$op" in
get)
	for k in "$@"; do
		case "$k" in
		power)
			if [ -z "$M" ]; then
				echo "power:$(cat "$D/power")"
			elif "$M" status </dev/null >>"$D/machine.log" 2>&1; then
				echo "power:1"
			else
				echo "power:0"
			fi ;;
		boot) echo "boot:$(cat "$D/boot")" ;;
		esac
	done
	;;
set)
	while [ $# -ge 2 ]; do
		echo "set $1 $2" >> "$D/ops.log"
		case "$1" in
		power|boot) echo "$2" > "$D/$1.tmp" && mv "$D/$1.tmp" "$D/$1" ;;
		shutdown) [ "$2" = 1 ] && echo 0 > "$D/power.tmp" && mv "$D/power.tmp" "$D/power" ;;
		esac
		if [ -n "$M" ]; then
			case "$1 $2" in
			"power 1") "$M" on "$(cat "$D/boot")" </dev/null >>"$D/machine.log" 2>&1 ;;
			"power 0"|"shutdown 1") "$M" off </dev/null >>"$D/machine.log" 2>&1 ;;
			"reset 1") "$M" reset "$(cat "$D/boot")" </dev/null >>"$D/machine.log" 2>&1 ;;
			esac
		fi
		shift 2
	done
	;;
esac
exit 0
`, dir, machine)
}
