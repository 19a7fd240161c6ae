package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

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
		client := &apitest.Client{URL: srv.URL, Token: srv.Token}
		var stmts int64
		// CPU time of the whole process (server and the in-process client's HTTP read) and
		// allocations per query, over the timed part only: less sensitive than the wall time to
		// what else the machine runs.
		b.ReportAllocs()
		var ru0, ru1 syscall.Rusage
		var cpu time.Duration
		if f := os.Getenv("PRYBAR_TOPO_CPUPROFILE"); f != "" {
			out, _ := os.Create(f)
			_ = pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
		if f := os.Getenv("PRYBAR_TOPO_MEMPROFILE"); f != "" {
			writeHeap := func(name string) {
				out, _ := os.Create(name)
				_ = pprof.Lookup("allocs").WriteTo(out, 0)
				out.Close()
			}
			writeHeap(f + ".base")
			defer writeHeap(f)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			before := st.Counter.Statements()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			// Timed: the request until the answer's last byte is read, as a client on the wire
			// (curl, the console) waits for it. Parsing the 3.5 MB answer in this test client and
			// checking it is the client's work, so the timer is stopped for it.
			status, body, err := client.RawContext(context.Background(), topology, nil)
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu += time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			stmts = st.Counter.Statements() - before
			if err != nil || status != 200 {
				b.Fatalf("status %d: %v", status, err)
			}
			var resp apitest.Response
			var got topo
			if err := json.Unmarshal(body, &resp); err != nil || len(resp.Errors) > 0 {
				b.Fatalf("%v %v", err, resp.Errors)
			}
			if err := resp.Decode(&got); err != nil {
				b.Fatal(err)
			}
			if n, _, _ := got.machines(); n != 10000 {
				b.Fatalf("%d machines", n)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/query")
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
// 1,000 WebSocket (graphql-transport-ws) subscribers, and the whole process's CPU time and
// allocations per delivery (server and clients: they share the process), which unlike the
// latency do not depend on what else the machine is running.
func BenchmarkFanout100(b *testing.B)  { fanout(b, 100) }
func BenchmarkFanout1000(b *testing.B) { fanout(b, 1000) }

func fanout(b *testing.B, n int) {
	benchBackends(b, func(b *testing.B, be apitest.Backend) {
		st := apitest.Open(b, apitest.DSN(b, be))
		srv := apitest.Serve(b, st)
		siteID := newSite(b, st, "fan")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var delivered atomic.Int64
		wake := make(chan struct{}, 1)
		clients := make([]*fanClient, n)
		for i := range clients {
			c, err := dialFan(ctx, srv.URL, &delivered, wake)
			if err != nil {
				b.Fatal(err)
			}
			clients[i] = c
		}
		waitFor := func(want int64) {
			deadline := time.After(60 * time.Second)
			for delivered.Load() < want {
				select {
				case <-wake:
				case <-deadline:
					b.Fatalf("%d of %d deliveries after 60 s", delivered.Load(), want)
				}
			}
		}
		waitFor(int64(n)) // the site creation, from the backlog
		rounds := 20 * b.N
		starts := make([]time.Time, rounds)
		var ru0, ru1 syscall.Rusage
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		b.ResetTimer()
		for r := range rounds {
			starts[r] = time.Now()
			touch(b, st, siteID, 1)
			waitFor(int64(n * (r + 2)))
		}
		b.StopTimer()
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		runtime.ReadMemStats(&ms1)
		var lat []time.Duration
		for _, c := range clients {
			if len(c.arrivals) != rounds+1 {
				b.Fatalf("a client got %d events, want %d", len(c.arrivals), rounds+1)
			}
			for r, at := range c.arrivals[1:] {
				lat = append(lat, at.Sub(starts[r]))
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-us/delivery")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(len(lat)), "allocs/delivery")
	})
}

// fanClient is the fan-out benchmark's subscriber: one graphql-transport-ws connection whose
// reader stamps each "next" frame's arrival as soon as it is read, before decoding anything.
// (apitest.Subscription decodes every frame three times, and the benchmark used to start a
// goroutine and a timer per subscriber per commit: client work that, on a 2-core machine,
// competes with the server being measured and inflated the latencies.)
type fanClient struct {
	conn     *websocket.Conn
	arrivals []time.Time // written by the reader only; read after the last delivery
}

func dialFan(ctx context.Context, baseURL string, delivered *atomic.Int64, wake chan struct{}) (*fanClient, error) {
	url := "ws" + strings.TrimPrefix(baseURL, "http") + "/graphql"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	initMsg, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + apitest.TokenFor(baseURL)}})
	if err := conn.Write(ctx, websocket.MessageText, initMsg); err != nil {
		return nil, err
	}
	if _, ack, err := conn.Read(ctx); err != nil || !bytes.Contains(ack, []byte(`"connection_ack"`)) {
		return nil, fmt.Errorf("no connection_ack: %s %v", ack, err)
	}
	payload, _ := json.Marshal(map[string]any{"query": apitest.EventsSubscription, "variables": map[string]any{"after": 0}})
	msg, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": json.RawMessage(payload)})
	if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
		return nil, err
	}
	c := &fanClient{conn: conn}
	go func() {
		defer conn.CloseNow()
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			at := time.Now()
			switch {
			case bytes.Contains(data, []byte(`"type":"next"`)):
				c.arrivals = append(c.arrivals, at)
				delivered.Add(1)
				select {
				case wake <- struct{}{}:
				default:
				}
			case bytes.Contains(data, []byte(`"type":"ping"`)):
				_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`))
			default: // error, complete: the benchmark notices the missing deliveries
				return
			}
		}
	}()
	return c, nil
}
