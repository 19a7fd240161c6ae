// Package testenv decides what a test does when something it needs from outside the repository is
// missing: a PostgreSQL server, ipmi_sim, ipmitool, the DMTF mock-ups in ../shared.
//
// On a developer machine the test is skipped with a message that names what is missing and how to
// get it, so the rest of the suite still runs. Under CI (CI=true, as every CI system sets it) the
// same test FAILS: a CI run that quietly skips the PostgreSQL or IPMI half of the suite would
// report green while testing nothing there, which is worse than red.
//
// Every test and test helper that would otherwise call t.Skip for a missing peer calls Require.
// Skips a developer asks for (go test -short) are not this package's business.
package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// EnvCI is the variable CI systems set (GitHub Actions, GitLab, Buildkite, Jenkins plugins, …)
// and `.ci/run` exports.
const EnvCI = "CI"

// InCI reports whether the environment says this is a CI run: CI set to anything but an empty,
// false or 0 value.
func InCI() bool {
	v := strings.TrimSpace(os.Getenv(EnvCI))
	if v == "" {
		return false
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return true // CI=yes, CI=woodpecker, …: set means set
}

// Require returns when err is nil. Otherwise the test cannot run because what (e.g. "PostgreSQL",
// "ipmi_sim") is missing: under CI it fails with err, elsewhere it is skipped with err. err should
// say how to get the missing part.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("%s unavailable: %v (%s=%s: a missing test peer fails the run instead of skipping it)", what, err, EnvCI, os.Getenv(EnvCI))
	}
	t.Skipf("SKIP: %s unavailable: %v (under %s=true this fails)", what, err, EnvCI)
}

// LookPath finds the program bin on PATH, as Require would have it: the test fails under CI and is
// skipped elsewhere when bin is missing; pkg names the Debian package that provides it.
func LookPath(t testing.TB, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		err = &missingProgram{bin: bin, pkg: pkg, err: err}
	}
	Require(t, bin, err)
	return p
}

type missingProgram struct {
	bin, pkg string
	err      error
}

func (e *missingProgram) Error() string {
	return e.bin + " not found on PATH (apt-get install " + e.pkg + "): " + e.err.Error()
}

func (e *missingProgram) Unwrap() error { return e.err }

// EnvChild marks a test binary that RunSelf started; helper tests that exist only to be run in a
// child process check it and return at once otherwise.
const EnvChild = "PRYBAR_TESTENV_CHILD"

// IsChild reports whether this test binary was started by RunSelf.
func IsChild() bool { return os.Getenv(EnvChild) == "1" }

// RunSelf runs the test named test of the current test binary in a child process, in directory
// dir (the current one when empty), with env added to (and overriding) the environment, and
// returns its combined output and exit error. Tests use it to watch another test skip or fail.
func RunSelf(t testing.TB, test string, dir string, env ...string) (string, error) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), EnvChild+"=1")
	cmd.Env = append(cmd.Env, env...) // later entries win
	out, err := cmd.CombinedOutput()
	return string(out), err
}
