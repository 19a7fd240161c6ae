package agent_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/agent"
)

// A periodic output flush still in flight when the script ends must not be acknowledged twice
// with the final flush: the agent once counted one chunk as sent by both, ran past its buffer
// and died (slice bounds out of range) in its first task, seen in the full discovery loop under
// load. Here every output POST is slow, so a tick's flush is always in flight at the end.
func TestRunOutputFlushInFlightAtExit(t *testing.T) {
	var mu sync.Mutex
	var posts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, r.URL.Query().Get("offset")+":"+string(b))
		mu.Unlock()
		time.Sleep(150 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	r := &agent.Runner{Client: &agent.Client{Base: srv.URL}, ChunkEvery: 10 * time.Millisecond}
	for i := 0; i < 3; i++ {
		res := r.Run(context.Background(), agent.Task{ID: 1, Kind: agent.KindScript, Script: "echo abcd; sleep 0.05; echo efgh; sleep 0.05", TimeoutSeconds: 10})
		if res.ExitCode != 0 || res.Error != "" {
			t.Fatalf("result %+v", res)
		}
		// Whatever streaming did not confirm travels in the result, from the right offset.
		if res.Output != "" && !strings.HasSuffix("abcd\nefgh\n", res.Output) {
			t.Fatalf("result output %q at offset %d", res.Output, res.OutputOffset)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	const out = "abcd\nefgh\n"
	for _, p := range posts {
		o, chunk, _ := strings.Cut(p, ":")
		off, err := strconv.Atoi(o)
		if err != nil || off+len(chunk) > len(out) || out[off:off+len(chunk)] != chunk {
			t.Errorf("output POST at offset %s: %q is not the script's output there", o, chunk)
		}
	}
}
