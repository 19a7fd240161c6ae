package scheduler

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/scheduler/catalog"
)

// benchRoles is a five-role noop chain whose lower roles are implicit, so binding the leaf to a
// machine gives it the whole chain on that machine.
func benchRoles(t testing.TB, e *env) {
	t.Helper()
	roles := []catalog.Role{
		{Name: "bench-0", Executor: "noop", Flags: catalog.Flags{Implicit: true}},
		{Name: "bench-1", Executor: "noop", Requires: []string{"bench-0"}, Flags: catalog.Flags{Implicit: true}},
		{Name: "bench-2", Executor: "noop", Requires: []string{"bench-1"}, Flags: catalog.Flags{Implicit: true}},
		{Name: "bench-3", Executor: "noop", Requires: []string{"bench-2"}, Flags: catalog.Flags{Implicit: true}},
		{Name: "bench-4", Executor: "noop", Requires: []string{"bench-3"}},
	}
	if _, err := e.a.LoadRoleDefs(context.Background(), roles); err != nil {
		t.Fatal(err)
	}
}

// annealFleet binds the bench chain on n machines, commits, and measures the time until every
// node-role is ACTIVE. It returns node-roles per second and the peak heap in MiB.
func annealFleet(t testing.TB, dsn string, machines int, commitChunk ...int) (rate float64, peakMiB float64, total int) {
	ctx := context.Background()
	opts := Options{Concurrency: 1000, BatchSize: 1000}
	if len(commitChunk) > 0 {
		opts.CommitChunk = commitChunk[0]
	}
	e := newEnv(t, dsn, opts)
	benchRoles(t, e)
	ms := e.machines(machines, "bench")
	dep, err := e.a.CreateDeployment(ctx, "bench", 0)
	if err != nil {
		t.Fatal(err)
	}
	setup := time.Now()
	for start := 0; start < len(ms); start += 1000 {
		if _, err := e.a.BindRoles(ctx, ms[start:min(start+1000, len(ms))], "bench-4", dep.ID); err != nil {
			t.Fatal(err)
		}
	}
	total, _ = e.st.Client.NodeRole.Query().Where(noderole.DeploymentID(dep.ID)).Count(ctx)
	if total != 5*machines {
		t.Fatalf("%d node-roles, want %d", total, 5*machines)
	}
	t.Logf("bound %d node-roles in %s", total, time.Since(setup).Round(time.Millisecond))
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	if err := e.a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := e.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	// Fail on a stall (no run finished for 30 s), not only on the overall deadline: a lost
	// wake-up shows as node-roles waiting forever.
	last, lastProgress := int64(-1), time.Now()
	for deadline := time.Now().Add(10 * time.Minute); e.a.stats.succeeded.Load() < int64(total); time.Sleep(5 * time.Millisecond) {
		if n := e.a.stats.succeeded.Load(); n != last {
			last, lastProgress = n, time.Now()
		}
		if time.Now().After(deadline) || time.Since(lastProgress) > 30*time.Second {
			counts, _ := stateCounts(ctx, e.st.Client.NodeRole.Query())
			t.Fatalf("only %d of %d ACTIVE (states %v)", e.a.stats.succeeded.Load(), total, counts)
		}
	}
	took := time.Since(began)
	close(stop)
	e.a.Stop()
	if n, _ := e.st.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateACTIVE)).Count(ctx); n != total {
		t.Fatalf("%d of %d ACTIVE", n, total)
	}
	return float64(total) / took.Seconds(), float64(peak.Load()) / (1 << 20), total
}

// TestAnnealThroughput keeps the bulk path covered in normal test runs: 1,000 machines × 5 noop
// roles on SQLite.
func TestAnnealThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput")
	}
	rate, peak, total := annealFleet(t, "", 1000)
	t.Logf("%d node-roles ACTIVE at %.0f node-roles/s, peak heap %.0f MiB", total, rate, peak)
}

// BenchmarkAnneal50k anneals 10,000 machines × 5 noop roles (PRYBAR_BENCH_MACHINES overrides the
// machine count) on SQLite and on PostgreSQL, reporting node-roles/s and the peak heap.
func BenchmarkAnneal50k(b *testing.B) {
	machines := 10000
	if v, err := strconv.Atoi(os.Getenv("PRYBAR_BENCH_MACHINES")); err == nil && v > 0 {
		machines = v
	}
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				dsn := ""
				if db == "postgres" {
					dsn = pgtest.New(b)
				}
				rate, peak, total := annealFleet(b, dsn, machines)
				b.ReportMetric(float64(total)/rate, "s-to-all-active")
				b.ReportMetric(rate, "noderoles/s")
				b.ReportMetric(peak, "peak-heap-MiB")
			}
		})
	}
}

// TestAnnealPostgresCommitRace anneals 1,500 machines × 5 roles on PostgreSQL with the scheduler
// already running while the deployment commits in several transactions: a commit that raced a
// parent's completion once left children BLOCKED forever (annealFleet fails unless every
// node-role ends ACTIVE).
func TestAnnealPostgresCommitRace(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput")
	}
	// Small commit transactions, so many of them race the completions of the runs they unblock.
	rate, _, total := annealFleet(t, pgtest.New(t), 1500, 200)
	t.Logf("%d node-roles ACTIVE at %.0f node-roles/s on PostgreSQL", total, rate)
}
