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

var statements sync.Map // statementKey → text

type statementKey struct {
	prefix, dialect string
	rows, cols      int
}

// Statement is prefix followed by the placeholders of rows rows of cols values each, in the
// dialect's style (? for SQLite, $1 … for PostgreSQL), and suffix. It is built once per
// arguments and then reused.
func Statement(dialectName, prefix string, rows, cols int, suffix string) string {
	key := statementKey{prefix + "\x00" + suffix, dialectName, rows, cols}
	if q, ok := statements.Load(key); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(" VALUES ")
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := 0; j < cols; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			if dialectName == dialect.Postgres {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(i*cols + j + 1))
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
	}
	b.WriteString(suffix)
	q := b.String()
	statements.Store(key, q)
	return q
}
