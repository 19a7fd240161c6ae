package multirow

import (
	"strings"
	"testing"

	"entgo.io/ent/dialect"
)

func TestChunksCoverEveryRowInFewSizes(t *testing.T) {
	for _, limit := range []int{0, 1, 3, 100, 500} {
		seen := map[int]bool{}
		for n := 0; n <= 1200; n++ {
			next := 0
			count := 0
			for start, end := range Chunks(n, limit) {
				if start != next || end <= start {
					t.Fatalf("n=%d limit=%d: run [%d,%d) after %d", n, limit, start, end, next)
				}
				if end-start > max(limit, 1) {
					t.Fatalf("n=%d limit=%d: run of %d rows", n, limit, end-start)
				}
				seen[end-start] = true
				next = end
				count++
			}
			if next != n {
				t.Fatalf("n=%d limit=%d: covered %d rows", n, limit, next)
			}
			if n == 1200 && limit == 500 && count > 4+2*3 {
				t.Fatalf("n=1200: %d statements", count)
			}
		}
		if len(seen) > len(sizes) {
			t.Fatalf("limit=%d: %d distinct sizes (%v): a statement cache would not keep them", limit, len(seen), seen)
		}
	}
}

func TestChunksStopWhenAsked(t *testing.T) {
	runs := 0
	for range Chunks(100, 100) {
		runs++
		break
	}
	if runs != 1 {
		t.Fatalf("%d runs after break", runs)
	}
}

func TestStatementPlaceholders(t *testing.T) {
	in := NewInsert("INSERT INTO t (a, b)", 2, " ON CONFLICT DO NOTHING")
	if got, want := in.SQL(dialect.SQLite, 2),
		"INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"; got != want {
		t.Fatalf("sqlite: %q, want %q", got, want)
	}
	if got, want := in.SQL(dialect.Postgres, 2),
		"INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"; got != want {
		t.Fatalf("postgres: %q, want %q", got, want)
	}
	if again := in.SQL(dialect.SQLite, 2); again != in.SQL(dialect.SQLite, 2) || !strings.HasSuffix(again, "(?, ?)"+" ON CONFLICT DO NOTHING") {
		t.Fatalf("again: %q", again)
	}
}
