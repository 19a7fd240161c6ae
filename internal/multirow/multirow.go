// Package multirow builds multi-row SQL statements (INSERT … VALUES (…), (…), …) in a few fixed
// sizes, so that a driver's prepared-statement cache keeps them.
//
// Writing a batch of n rows as one statement of n rows prepares a new statement for nearly every
// batch, since batch lengths vary: with SQLite, preparing those statements was 8% of the DHCP
// server's CPU under load. Split into the sizes Chunks gives, a batch of any length runs as a
// handful of statements that are each prepared once per connection.
package multirow

import (
	"iter"
	"strconv"
	"strings"
	"sync"

	"entgo.io/ent/dialect"
)

// sizes are the statement sizes Chunks uses, largest first: each a quarter of the one before,
// so a batch needs at most three statements of each size below its largest.
var sizes = []int{256, 64, 16, 4, 1}

// Chunks splits rows [0, n) into runs whose lengths are all in a fixed set of sizes no larger
// than limit (limit < 1 counts as 1), yielding each run's start and end.
func Chunks(n, limit int) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		start := 0
		for _, size := range sizes {
			if size > limit && size > 1 {
				continue
			}
			for n-start >= size {
				if !yield(start, start+size) {
					return
				}
				start += size
			}
		}
	}
}

// Insert is one statement shape: prefix (INSERT INTO t (cols…)), then VALUES with rows of Cols
// placeholders each, then suffix (ON CONFLICT …). Its texts are built once per dialect and row
// count and then reused: SQL is called for every batch, so it only looks them up.
type Insert struct {
	prefix, suffix string
	cols           int
	texts          sync.Map // textKey → string
}

type textKey struct {
	dialect string
	rows    int
}

// NewInsert describes a statement shape (see Insert).
func NewInsert(prefix string, cols int, suffix string) *Insert {
	return &Insert{prefix: prefix, suffix: suffix, cols: cols}
}

// SQL is the statement for rows rows, in the dialect's placeholder style (? for SQLite, $1 … for
// PostgreSQL).
func (in *Insert) SQL(dialectName string, rows int) string {
	key := textKey{dialectName, rows}
	if q, ok := in.texts.Load(key); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(in.prefix)
	b.WriteString(" VALUES ")
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := 0; j < in.cols; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			if dialectName == dialect.Postgres {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(i*in.cols + j + 1))
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
	}
	b.WriteString(in.suffix)
	q := b.String()
	in.texts.Store(key, q)
	return q
}
