package ipmisimtest_test

import (
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
