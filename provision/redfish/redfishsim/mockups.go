package redfishsim

import (
	"fmt"
	"os"
	"path/filepath"
)

// FindMockup locates the DMTF mock-up name (e.g. "public-rackmount1") in
// ../shared/redfish-mockups beside the checkout that holds the working directory, found by walking
// up to go.mod so callers at any depth (tests, `prybar sim` run from the repo) agree. The error says
// where it looked, so a test can skip with it.
func FindMockup(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("redfish mock-up %s: repository root (go.mod) not found above the working directory", name)
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "redfish-mockups", name)
	if _, err := os.Stat(filepath.Join(p, "index.json")); err != nil {
		return "", fmt.Errorf("redfish mock-up %s not found at %s (../shared/redfish-mockups beside the checkout)", name, p)
	}
	return p, nil
}
