package dhcp

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/lease"
	"github.com/prybar/prybar/internal/store"
)

func randomRecord(r *rand.Rand) journalRecord {
	str := func() string {
		b := make([]byte, r.IntN(20))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	tm := func() time.Time {
		if r.IntN(4) == 0 {
			return time.Time{}
		}
		return time.Unix(0, r.Int64N(4e18)-2e18)
	}
	addr := func() netip.Addr {
		if r.IntN(5) == 0 {
			return netip.Addr{}
		}
		return netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	var rec journalRecord
	for range r.IntN(4) {
		rec.Leases = append(rec.Leases, Lease{NetworkID: r.IntN(1 << 20), Addr: addr(), MAC: str(), State: State(str()),
			Expires: tm(), ClientID: str(), Hostname: str(), MachineID: r.IntN(1<<30) - 1<<29, Trace: str(), TraceAt: tm()})
	}
	for range r.IntN(4) {
		e := Event{Kind: str(), MAC: str(), Addr: addr(), NetworkID: r.IntN(1000), MachineID: r.IntN(1000), At: tm(), Expires: tm(), Trace: str()}
		if r.IntN(3) == 0 {
			e.Data = map[string]any{"network": fmt.Sprint("net-", r.IntN(100)), "n": float64(r.IntN(1000))} // JSON: valid UTF-8
		}
		rec.Events = append(rec.Events, e)
	}
	return rec
}

// sameRecord compares records with times by instant (a decoded time is in the local zone, with no
// monotonic reading).
func sameRecord(a, b journalRecord) bool {
	norm := func(r journalRecord) journalRecord {
		var out journalRecord
		for _, l := range r.Leases {
			l.Expires, l.TraceAt = l.Expires.UTC(), l.TraceAt.UTC()
			out.Leases = append(out.Leases, l)
		}
		for _, e := range r.Events {
			e.At, e.Expires = e.At.UTC(), e.Expires.UTC()
			out.Events = append(out.Events, e)
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestJournalRecordRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		rec := randomRecord(r)
		b, err := appendRecord(nil, rec.Leases, rec.Events)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !sameRecord(got, rec) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got, rec)
		}
		// Every strict prefix is refused, never read as a shorter record or a panic.
		for cut := 0; cut < len(b); cut++ {
			if _, err := decodeRecord(b[:cut]); err == nil {
				t.Fatalf("record %d cut to %d of %d bytes decoded without an error", i, cut, len(b))
			}
		}
	}
}

func FuzzJournalRecord(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		rec := randomRecord(r)
		b, _ := appendRecord(nil, rec.Leases, rec.Events)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := appendRecord(nil, rec.Leases, rec.Events)
		if err != nil {
			t.Fatal(err)
		}
		if rec2, err := decodeRecord(again); err != nil || !sameRecord(rec, rec2) {
			t.Fatalf("re-encoded record does not decode the same: %v", err)
		}
	})
}

var quietLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// journalStore opens a SQLite store with one network (id returned) for journal tests.
func journalStore(t *testing.T) (*store.Store, int) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var nid int
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		n, err := tx.Network.Create().SetName("j").SetCidr("10.9.0.0/16").Save(ctx)
		nid = n.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, nid
}

func bound(nid int, i int) ([]Lease, []Event) {
	a := netip.AddrFrom4([4]byte{10, 9, 1, byte(i)})
	mac := fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8&0xff, i&0xff)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	return []Lease{{NetworkID: nid, Addr: a, MAC: mac, State: Bound, Expires: exp}},
		[]Event{{Kind: "lease.bound", MAC: mac, Addr: a, NetworkID: nid, At: time.Now(), Expires: exp}}
}

// commitBound journals n bindings and commits them as the commit stage would (rotation,
// transaction with the mark), without dropping the generation: the caller decides whether the
// process "died" before the drop. It returns the segment they went to.
// openTestJournal opens an empty journal on a new store (journalStore).
func openTestJournal(t *testing.T) (*store.Store, int, *journal, string) {
	t.Helper()
	st, nid := journalStore(t)
	dir := filepath.Join(t.TempDir(), "journal")
	j, n, err := openJournal(context.Background(), st, dir, quietLog)
	if err != nil || n != 0 {
		t.Fatalf("fresh journal: %d replayed, %v", n, err)
	}
	return st, nid, j, dir
}

func commitBound(t *testing.T, st *store.Store, j *journal, nid, n int) *segment {
	t.Helper()
	var all []Lease
	var allEvs []Event
	for i := range n {
		ls, evs := bound(nid, i)
		all, allEvs = append(all, ls...), append(allEvs, evs...)
		if err := j.append(ls, evs); err != nil {
			t.Fatal(err)
		}
	}
	sg := j.cur
	mark := j.rotate()
	if err := persist(context.Background(), st, all, allEvs, mark); err != nil {
		t.Fatal(err)
	}
	return sg
}

func countRows(t *testing.T, st *store.Store) (leases, boundEvents int) {
	t.Helper()
	ctx := context.Background()
	l, err := st.Client.Lease.Query().Where(lease.StateEQ(lease.StateBOUND)).Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DB.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE kind = 'lease.bound'`).Scan(&boundEvents); err != nil {
		t.Fatal(err)
	}
	return l, boundEvents
}

func segmentFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "seg-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// What was appended but never committed (the process died) is stored at the next start, once.
func TestJournalReplaysUncommittedChanges(t *testing.T) {
	st, nid, j, dir := openTestJournal(t)
	ctx := context.Background()
	for i := range 3 {
		ls, evs := bound(nid, i)
		if err := j.append(ls, evs); err != nil {
			t.Fatal(err)
		}
	}
	j.rotate() // a commit stage took them ...
	ls, evs := bound(nid, 3)
	if err := j.append(ls, evs); err != nil { // ... and more arrived; then the process died
		t.Fatal(err)
	}
	if l, e := countRows(t, st); l != 0 || e != 0 {
		t.Fatalf("before replay: %d leases, %d events stored", l, e)
	}

	j2, n, err := openJournal(ctx, st, dir, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("replayed %d leases, want 4", n)
	}
	if l, e := countRows(t, st); l != 4 || e != 4 {
		t.Fatalf("after replay: %d bound leases, %d lease.bound events; want 4 and 4", l, e)
	}
	// New generations continue after the replayed ones, in the segments already there, and a
	// restart replays nothing twice.
	ls, evs = bound(nid, 4)
	if err := j2.append(ls, evs); err != nil {
		t.Fatal(err)
	}
	if n := segmentFiles(t, dir); n != 2 {
		t.Fatalf("%d segment files, want the 2 there were", n)
	}
	j2.rotate()
	if _, n, err = openJournal(ctx, st, dir, quietLog); err != nil || n != 1 {
		t.Fatalf("second restart: %d replayed, %v; want 1", n, err)
	}
	if l, e := countRows(t, st); l != 5 || e != 5 {
		t.Fatalf("after second replay: %d leases, %d events; want 5 and 5", l, e)
	}
}

// A crash after a transaction committed but before its segments were removed must not store
// their events twice: the transaction recorded the generations it covered.
func TestJournalSkipsSegmentsAlreadyCommitted(t *testing.T) {
	st, nid, j, dir := openTestJournal(t)
	ctx := context.Background()
	commitBound(t, st, j, nid, 3)
	// No j.drop: the process died here.
	if _, n, err := openJournal(ctx, st, dir, quietLog); err != nil || n != 0 {
		t.Fatalf("restart: %d replayed, %v; want 0", n, err)
	}
	if l, e := countRows(t, st); l != 3 || e != 3 {
		t.Fatalf("%d leases, %d lease.bound events; want 3 and 3 (no duplicates)", l, e)
	}
}

// A reused segment still holds the records of the generation before, after the new ones: they
// must read as the end, not be replayed again (their changes are stored; their events would be
// recorded twice).
func TestJournalReusedSegmentHidesOlderRecords(t *testing.T) {
	st, nid, j, dir := openTestJournal(t)
	ctx := context.Background()
	first := commitBound(t, st, j, nid, 5)
	j.drop(j.gen)            // the commit stage's drop after the transaction
	ls, evs := bound(nid, 9) // the next generation, in the same segment, then a crash
	if err := j.append(ls, evs); err != nil {
		t.Fatal(err)
	}
	if j.cur != first {
		t.Fatal("a free segment was not reused")
	}
	if _, n, err := openJournal(ctx, st, dir, quietLog); err != nil || n != 1 {
		t.Fatalf("restart replayed %d (%v), want only the 1 record of the newest generation", n, err)
	}
	if l, e := countRows(t, st); l != 6 || e != 6 {
		t.Fatalf("%d leases, %d lease.bound events; want 6 and 6", l, e)
	}
}

// A record cut short or corrupted (a machine crash mid-append) ends its segment: the records
// before it are replayed, the server starts.
func TestJournalStopsAtACorruptRecord(t *testing.T) {
	st, nid, j, dir := openTestJournal(t)
	ctx := context.Background()
	var second int
	for i := range 3 {
		if i == 1 {
			second = j.cur.off
		}
		ls, evs := bound(nid, i)
		if err := j.append(ls, evs); err != nil {
			t.Fatal(err)
		}
	}
	j.cur.m[second+recordHeader+3] ^= 0xff // a flipped byte in the second record's payload
	n := binary.LittleEndian.Uint32(j.cur.m[second:])
	if n == 0 {
		t.Fatal("no second record")
	}
	if _, got, err := openJournal(ctx, st, dir, quietLog); err != nil || got != 1 {
		t.Fatalf("replayed %d, %v; want the one record before the corrupt one", got, err)
	}
	if l, _ := countRows(t, st); l != 1 {
		t.Fatalf("%d leases stored, want 1", l)
	}
}

// A batch larger than a segment gets a segment of its own size; one that does not fit what is left
// of a segment goes to the next. Both are covered by the rotation that follows.
func TestJournalSegmentsFillAndGrow(t *testing.T) {
	st, nid, j, dir := openTestJournal(t)
	ctx := context.Background()
	big := make([]Lease, 0, 40000)
	for i := range cap(big) {
		ls, _ := bound(nid, i%250)
		ls[0].Addr = netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		ls[0].Hostname = strings.Repeat("h", 100)
		big = append(big, ls[0])
	}
	if err := j.append(big[:30000], nil); err != nil { // some 4.5 MB: more than a segment
		t.Fatal(err)
	}
	if err := j.append(big[30000:], nil); err != nil {
		t.Fatal(err)
	}
	if n := segmentFiles(t, dir); n != 2 {
		t.Fatalf("%d segments, want 2", n)
	}
	j.rotate()
	if _, n, err := openJournal(ctx, st, dir, quietLog); err != nil || n != len(big) {
		t.Fatalf("replayed %d, %v; want %d", n, err, len(big))
	}
}
