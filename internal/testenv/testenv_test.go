package testenv_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/prybar/prybar/internal/testenv"
)

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "true": true, "1": true, "false": false, "0": false, "yes": true, "woodpecker": true} {
		t.Setenv(testenv.EnvCI, v)
		if got := testenv.InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %t, want %t", v, got, want)
		}
	}
}

// TestChildRequire is run by TestRequireFailsUnderCI in a child process.
func TestChildRequire(t *testing.T) {
	if !testenv.IsChild() {
		return
	}
	testenv.Require(t, "the frobnicator", errors.New("not installed (apt-get install frobnicator)"))
	t.Log("REACHED after Require")
}

// TestChildLookPath is run by TestRequireFailsUnderCI in a child process.
func TestChildLookPath(t *testing.T) {
	if !testenv.IsChild() {
		return
	}
	testenv.LookPath(t, "prybar-no-such-program", "prybar-no-such-package")
	t.Log("REACHED after LookPath")
}

// A missing peer skips the test on a developer machine and fails it under CI=true; either way the
// test body after the check does not run, and the message says what is missing.
func TestRequireFailsUnderCI(t *testing.T) {
	for _, child := range []string{"TestChildRequire", "TestChildLookPath"} {
		for _, ci := range []string{"", "true"} {
			out, err := testenv.RunSelf(t, child, "", "CI="+ci)
			if strings.Contains(out, "REACHED") {
				t.Errorf("%s CI=%q: the test went on past a missing peer:\n%s", child, ci, out)
			}
			if !strings.Contains(out, "unavailable") {
				t.Errorf("%s CI=%q: output does not say what is missing:\n%s", child, ci, out)
			}
			if ci == "true" {
				if err == nil || !strings.Contains(out, "--- FAIL") {
					t.Errorf("%s CI=true: want a failure, got err %v:\n%s", child, err, out)
				}
			} else if err != nil || !strings.Contains(out, "--- SKIP") {
				t.Errorf("%s CI unset: want a skip, got err %v:\n%s", child, err, out)
			}
		}
	}
}

func TestRequireNilIsNoop(t *testing.T) {
	testenv.Require(t, "nothing", nil)
}
