package graph_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/store"
)

// benchBackends lets `make bench` measure both databases.
func benchBackends(b *testing.B, fn func(b *testing.B, be apitest.Backend)) {
	for _, be := range []apitest.Backend{apitest.SQLite, apitest.Postgres} {
		b.Run(string(be), func(b *testing.B) { fn(b, be) })
	}
}

// BenchmarkTopology10k: the nested topology query over 10,000 machines (time per query and SQL
// statements per query).
func BenchmarkTopology10k(b *testing.B) {
	benchBackends(b, func(b *testing.B, be apitest.Backend) {
		st := apitest.Open(b, apitest.DSN(b, be))
		fleet(b, st, 10000)
		srv := apitest.Serve(b, st)
		var stmts int64
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			before := st.Counter.Statements()
			var got topo
			resp, err := srv.Do(topology, nil)
			if err != nil || len(resp.Errors) > 0 {
				b.Fatalf("%v %v", err, resp.Errors)
			}
			if err := resp.Decode(&got); err != nil {
				b.Fatal(err)
			}
			stmts = st.Counter.Statements() - before
			if n, _, _ := got.machines(); n != 10000 {
				b.Fatalf("%d machines", n)
			}
		}
		b.ReportMetric(float64(stmts), "sql-statements/query")
		perQuery := float64(b.Elapsed().Microseconds()) / 1000 / float64(b.N)
		b.ReportMetric(perQuery, "ms/query")
		if be == apitest.SQLite {
			// The baseline: the same rows read as JSON straight from SQLite (what `sqlite3 -json`
			// does), best of 3, so the ratio is printed in the same run.
			b.StopTimer()
			raw := rawTopologyJSON(b, st)
			b.ReportMetric(float64(raw.Microseconds())/1000, "raw-sqlite-json-ms")
			b.ReportMetric(perQuery/(float64(raw.Microseconds())/1000), "x-raw-sqlite")
		}
	})
}

// rawTopologyJSON reads the rows the topology query returns as JSON text with SQLite's JSON
// functions through the same driver, and returns the best time of 3.
func rawTopologyJSON(b *testing.B, st *store.Store) time.Duration {
	qs := []string{
		`SELECT json_group_array(json_object('id', id, 'name', name)) FROM sites`,
		`SELECT json_group_array(json_object('id', id, 'name', name, 'height', height, 'site', site_id)) FROM racks`,
		`SELECT json_group_array(json_object('id', id, 'name', name, 'uPosition', u_position, 'uHeight', u_height, 'rack', rack_id)) FROM machines`,
		`SELECT json_group_array(json_object('mac', mac, 'machine', machine_id)) FROM nics`,
		`SELECT json_group_array(json_object('name', name, 'sizeBytes', size_bytes, 'machine', machine_id)) FROM disks`,
		`SELECT json_group_array(json_object('protocol', protocol, 'address', address, 'machine', machine_id)) FROM bmcs`,
	}
	best := time.Duration(1 << 62)
	for r := 0; r < 3; r++ {
		start, size := time.Now(), 0
		for _, q := range qs {
			var out string
			if err := st.DB.QueryRowContext(context.Background(), q).Scan(&out); err != nil {
				b.Fatalf("%s: %v", q, err)
			}
			size += len(out)
		}
		best = min(best, time.Since(start))
		if size < 1<<20 {
			b.Fatalf("raw JSON is only %d bytes", size)
		}
	}
	return best
}

// BenchmarkCreateMachine: createMachine mutations per second through the GraphQL API (each one a
// validated, evented transaction), from 4 concurrent clients.
func BenchmarkCreateMachine(b *testing.B) {
	benchBackends(b, func(b *testing.B, be apitest.Backend) {
		st := apitest.Open(b, apitest.DSN(b, be))
		srv := apitest.Serve(b, st)
		const n = 1000
		var wg sync.WaitGroup
		start := time.Now()
		errs := make(chan error, 4)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < n*b.N; i += 4 {
					resp, err := srv.Do(`mutation($name: String!) { createMachine(input: {name: $name, serial: "S"}) { machine { id } errors { field } } }`,
						map[string]any{"name": fmt.Sprintf("m%d.bench.example", i)})
					if err != nil || len(resp.Errors) > 0 {
						errs <- fmt.Errorf("%v %v", err, resp.Errors)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		el := time.Since(start)
		b.ReportMetric(float64(n*b.N)/el.Seconds(), "mutations/s")
	})
}

// BenchmarkFanout100 and BenchmarkFanout1000: latency from commit to delivery at each of 100 /
// 1,000 WebSocket (graphql-transport-ws) subscribers.
func BenchmarkFanout100(b *testing.B)  { fanout(b, 100) }
func BenchmarkFanout1000(b *testing.B) { fanout(b, 1000) }

func fanout(b *testing.B, n int) {
	benchBackends(b, func(b *testing.B, be apitest.Backend) {
		st := apitest.Open(b, apitest.DSN(b, be))
		srv := apitest.Serve(b, st)
		siteID := newSite(b, st, "fan")
		subs := make([]*apitest.Subscription, n)
		for i := range subs {
			subs[i] = subscribe(b, srv.URL, 0)
			if _, err := subs[i].NextEvent(30 * time.Second); err != nil { // the site creation
				b.Fatal(err)
			}
		}
		var lat []time.Duration
		rounds := 20 * b.N
		for r := 0; r < rounds; r++ {
			start := time.Now()
			touch(b, st, siteID, 1)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, s := range subs {
				wg.Add(1)
				go func(s *apitest.Subscription) {
					defer wg.Done()
					if _, err := s.NextEvent(5 * time.Second); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(start))
					mu.Unlock()
				}(s)
			}
			wg.Wait()
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	})
}
