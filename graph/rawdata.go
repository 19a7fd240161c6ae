package graph

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
)

// A large answer's data is written past encoding/json. gqlgen's POST transport marshals the
// whole graphql.Response with json.Marshal, which re-validates and re-compacts the data the
// executor has just written as compact JSON: for the 3.5 MB topology answer, a full scan and copy
// (≈ 8% of the query's CPU, docs/benchmarks.md). Instead, the outermost response interceptor
// (registered before any other, so every other one sees the real data) swaps data of at least
// rawDataMin bytes for a per-process random marker, and the writer wrapped around POST requests
// writes the data where gqlgen's single Write of the marshalled response holds the marker.
// Everything else — status, headers, errors, extensions — stays gqlgen's. The data is then sent
// without encoding/json's HTML escaping of <, > and & inside strings, which JSON does not require.

const rawDataMin = 64 << 10

var rawDataMark = func() json.RawMessage {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return json.RawMessage(`"prybar-data-` + hex.EncodeToString(b[:]) + `"`)
}()

type rawDataKey struct{}

// rawDataSlot holds one request's data between the interceptor and the writer.
type rawDataSlot struct{ data json.RawMessage }

// withRawData wraps POST requests so that a large answer's data can bypass json.Marshal.
func withRawData(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		slot := &rawDataSlot{}
		next.ServeHTTP(&rawDataWriter{ResponseWriter: w, slot: slot}, r.WithContext(context.WithValue(r.Context(), rawDataKey{}, slot)))
	})
}

// takeRawData is the outermost gqlgen response interceptor.
func takeRawData(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if slot, ok := ctx.Value(rawDataKey{}).(*rawDataSlot); ok && resp != nil && slot.data == nil && len(resp.Data) >= rawDataMin {
		slot.data, resp.Data = resp.Data, rawDataMark
	}
	return resp
}

type rawDataWriter struct {
	http.ResponseWriter
	slot *rawDataSlot
}

func (w *rawDataWriter) Write(b []byte) (int, error) {
	if w.slot.data == nil {
		return w.ResponseWriter.Write(b)
	}
	i := bytes.Index(b, rawDataMark)
	if i < 0 {
		return w.ResponseWriter.Write(b)
	}
	data := w.slot.data
	w.slot.data = nil
	for _, part := range [][]byte{b[:i], data, b[i+len(rawDataMark):]} {
		if _, err := w.ResponseWriter.Write(part); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
