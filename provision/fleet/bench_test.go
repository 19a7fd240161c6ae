package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/fleet"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/scheduler/executor"
)

// BenchmarkPowerCycle1000 power-cycles 1,000 simulated BMCs (half Redfish, half IPMI) through the
// executor with at most 100 operations in flight, and reports the wall time of one fleet-wide
// cycle, operations per second and the most sessions / concurrent requests any single BMC saw.
func BenchmarkPowerCycle1000(b *testing.B) {
	const n, parallel = 1000, 100
	f, err := fleet.Start(fleet.Config{Machines: n, RedfishShare: 0.5, MockupDir: mockupDir(b),
		PowerDelay: 20 * time.Millisecond, PoweredOn: true})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	e := oob.New(oob.Config{
		SettleTimeout: 30 * time.Second, PollInterval: 25 * time.Millisecond, CycleOffWindow: 2 * time.Second,
		RedfishOptions: []redfish.Option{redfish.WithRetry(4, 20*time.Millisecond), redfish.WithTimeout(10 * time.Second)},
		IPMIOptions:    []ipmi.Option{ipmi.WithCipherSuite(3), ipmi.WithTimeout(3 * time.Second)},
	})
	ctx := context.Background()
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, parallel)
		errs := make(chan error, n)
		for _, bm := range f.BMCs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				in := executor.Input{Machine: executor.Machine{ID: bm.Index, Name: bm.Name, BMC: bm.ExecutorBMC()},
					Attrs: map[string]any{"action": "power-cycle"}}
				if _, err := e.Run(ctx, in); err != nil {
					errs <- fmt.Errorf("%s (%s): %w", bm.Name, bm.Protocol, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.StopTimer()
	s := f.Stats()
	if s.OpenSessions != 0 {
		b.Errorf("%d sessions left open", s.OpenSessions)
	}
	for _, bs := range s.BMCs {
		if bs.Power != "On" && bs.Power != "on" {
			b.Fatalf("%s ends %q", bs.Name, bs.Power)
		}
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds(), "wall-s/fleet-cycle")
	b.ReportMetric(float64(n)/per.Seconds(), "cycles/s")
	b.ReportMetric(float64(s.MaxPeakSessions), "peak-sessions/BMC")
	b.ReportMetric(float64(s.MaxPeakConcurrent), "peak-concurrent/BMC")
	b.ReportMetric(float64(e.PeakActive()), "peak-ops/BMC")
}
