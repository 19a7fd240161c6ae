package ipmisimtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prybar/prybar/internal/testenv"
	"github.com/prybar/prybar/provision/ipmi/ipmisimtest"
)

// TestChildStartWithoutPeer is run by TestMissingIpmiSimFailsUnderCI with a PATH lacking ipmi_sim.
func TestChildStartWithoutPeer(t *testing.T) {
	if !testenv.IsChild() {
		return
	}
	ipmisimtest.Start(t)
	t.Log("REACHED: started without ipmi_sim")
}

// Under CI=true a test that needs ipmi_sim and cannot find it fails (make test must not turn
// green by skipping the IPMI half); outside CI it is skipped, saying what to install.
func TestMissingIpmiSimFailsUnderCI(t *testing.T) {
	empty := t.TempDir() // a PATH with nothing on it
	out, err := testenv.RunSelf(t, "TestChildStartWithoutPeer", "", "PATH="+empty, "CI=true")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "ipmi_sim") {
		t.Fatalf("CI=true, no ipmi_sim: want the test to fail naming ipmi_sim; err %v, output:\n%s", err, out)
	}
	out, err = testenv.RunSelf(t, "TestChildStartWithoutPeer", "", "PATH="+empty, "CI=")
	if err != nil || !strings.Contains(out, "--- SKIP") || !strings.Contains(out, "openipmi") {
		t.Fatalf("no CI, no ipmi_sim: want a skip naming the package; err %v, output:\n%s", err, out)
	}
}

// A machine program behind the chassis: ipmi_sim's power-on runs it with the boot device set
// through IPMI, its power query follows the program's status (a machine that stopped by itself
// reads as off), and power-off runs it again.
func TestMachineProgram(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "machine")
	script := `#!/bin/sh
D='` + dir + `'
echo "$*" >> "$D/calls"
case "$1" in
on) touch "$D/running" ;;
off) rm -f "$D/running" ;;
status) [ -e "$D/running" ] ;;
esac
`
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sim := ipmisimtest.Start(t, ipmisimtest.Options{Machine: prog})
	sim.Ipmitool(t, "chassis", "bootdev", "pxe")
	sim.Ipmitool(t, "chassis", "power", "on")
	if out := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "is on") {
		t.Fatalf("after power on: %q", out)
	}
	if err := os.Remove(filepath.Join(dir, "running")); err != nil { // the machine halts by itself
		t.Fatal(err)
	}
	if out := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "is off") {
		t.Fatalf("after the machine stopped: %q", out)
	}
	sim.Ipmitool(t, "chassis", "power", "on")
	sim.Ipmitool(t, "chassis", "power", "off")
	b, _ := os.ReadFile(filepath.Join(dir, "calls"))
	var acts []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "status" {
			acts = append(acts, l)
		}
	}
	if got := strings.Join(acts, ","); !strings.HasPrefix(got, "on pxe,on ") || !strings.HasSuffix(got, ",off") {
		t.Errorf("machine program calls (status left out): %s", got)
	}
	t.Logf("machine calls: %q; chassis log: %q", acts, sim.Log())
}
