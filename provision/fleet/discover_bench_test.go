package fleet_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/fleet"
)

// BenchmarkDiscoverToReady is the discover → ready benchmark (fleet.Bench, also `prybar sim
// bench`): a real `prybar serve` built from this tree, PRYBAR_FLEET_MACHINES simulated machines
// (default 10,000; half Redfish, half IPMI) with simulated agents, the built-in chain bound on
// every machine and committed over GraphQL. It reports the wall time from the commit until every
// machine is READY, node-roles per second, and the server's peak RSS and CPU time.
func BenchmarkDiscoverToReady(b *testing.B) {
	n := 10000
	if v := os.Getenv("PRYBAR_FLEET_MACHINES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("PRYBAR_FLEET_MACHINES=%q: want a positive number", v)
		}
	}
	mockup := mockupDir(b)
	bin := filepath.Join(b.TempDir(), "prybar")
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		b.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/prybar")
	build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	var res fleet.BenchResult
	for range b.N {
		res, err = fleet.Bench(context.Background(), fleet.BenchConfig{Prybar: bin, Machines: n, RedfishShare: 0.5, MockupDir: mockup,
			Timeout: 45 * time.Minute, Out: benchLog{b}})
		if err != nil {
			b.Fatalf("%v\n%s", err, res)
		}
	}
	b.Logf("%s", res)
	b.ReportMetric(res.Wall.Seconds(), "wall-s")
	b.ReportMetric(float64(res.NodeRoles)/res.Wall.Seconds(), "node-roles/s")
	b.ReportMetric(float64(res.PeakRSS)/(1<<20), "serve-peak-rss-MB")
	b.ReportMetric(res.ServeCPU.Seconds(), "serve-cpu-s")
	b.ReportMetric(float64(n), "machines")
}

// benchLog sends progress lines to the benchmark's log.
type benchLog struct{ b *testing.B }

func (l benchLog) Write(p []byte) (int, error) {
	l.b.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
