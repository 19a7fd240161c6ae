package redfishsimtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prybar/prybar/internal/testenv"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
)

// TestChildStartWithoutMockups is run by TestMissingMockupsFailUnderCI in a checkout without
// ../shared.
func TestChildStartWithoutMockups(t *testing.T) {
	if !testenv.IsChild() {
		return
	}
	redfishsimtest.Start(t, "public-rackmount1", redfishsim.Config{})
	t.Log("REACHED: started without the mock-ups")
}

// Under CI=true a test whose DMTF mock-ups (../shared) are missing fails; outside CI it skips.
func TestMissingMockupsFailUnderCI(t *testing.T) {
	// A checkout root (go.mod) with no ../shared beside it.
	root := filepath.Join(t.TempDir(), "checkout")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := testenv.RunSelf(t, "TestChildStartWithoutMockups", root, "CI=true")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "mock-up") {
		t.Fatalf("CI=true, no mock-ups: want a failure naming the mock-up; err %v, output:\n%s", err, out)
	}
	out, err = testenv.RunSelf(t, "TestChildStartWithoutMockups", root, "CI=")
	if err != nil || !strings.Contains(out, "--- SKIP") {
		t.Fatalf("no CI, no mock-ups: want a skip; err %v, output:\n%s", err, out)
	}
}
