package dhcp

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prybar/prybar/internal/store"
	"golang.org/x/sys/unix"
)

// A journal lets an acknowledgement leave before its lease change is in the database, without
// giving up the promise that an acknowledged lease survives a crash.
//
// Without it, an ACK waits for the SQLite transaction that stores its binding. That costs a
// transaction every few milliseconds under load (group commit keeps them short so that the ACKs
// they hold back do not leave in bursts that overflow relays' and clients' receive buffers), and
// those transactions were most of the server's database cost. With it, the reader appends the
// batch's durable changes to a file (one write) and sends the ACKs at once, smoothly, like the
// OFFERs; the commit stage then writes everything to SQLite in large transactions (one per
// LazyFlush) and removes the journal segments that transaction covered.
//
// A write that has returned survives the process being killed: the data is in the kernel. That
// is the same promise as the database's (SQLite in WAL mode with synchronous=NORMAL, as the store
// opens it): neither survives losing power before the operating system writes it out.
//
// Segments are files named seg-<generation> in the journal's directory. The commit stage starts a
// new segment each time it takes the pending writes, so a segment's records are all in the
// transaction that takes it (or in a later one, if that one fails). The transaction records the
// highest generation it covers in the dhcp_journal table; at start-up, segments up to that
// generation are removed unread (their changes are already stored: re-applying them would record
// their events twice), and later ones are replayed in one transaction before serving.
//
// A segment is a file of segmentSize bytes, allocated up front and mapped into memory: an append
// is a copy into the mapping, with no system call. Pages written through a shared mapping belong
// to the file in the kernel's page cache, so they survive the process exactly as a write would.
// (Allocated, not sparse: a page the file system cannot back would be a SIGBUS when the disk
// fills; allocation fails cleanly instead, and the server falls back to a transaction per ACK.)
type journal struct {
	dir     string
	seg     []byte // the mapped segment being appended to; nil until the first append after a rotation
	off     int    // where the next record goes in seg
	full    [][]byte
	gen     uint64 // the newest segment's generation
	removed uint64 // segments up to this generation are gone (touched only by the commit stage)
	buf     []byte
}

// segmentSize is a segment's allocated size. A segment normally holds one LazyFlush of changes
// (about 100 KB at 5,000 exchanges a second); a full one is followed by another.
const segmentSize = 4 << 20

// journalRecord is one append: the durable changes of one handled batch, in the order the lease
// table made them.
type journalRecord struct {
	Leases []Lease
	Events []Event
}

// A record on disk: length of the payload and its CRC-32C (both little-endian uint32), then the
// payload (journal_codec.go). A zero length marks the end of what was written: the rest of the
// segment is as allocated, zeros.
const recordHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalSchema is the table that says which segments the database already holds. It is the DHCP
// server's own (it is created here, not by the schema migration) and holds one row.
const journalSchema = `CREATE TABLE IF NOT EXISTS dhcp_journal (id INTEGER PRIMARY KEY CHECK (id = 1), applied INTEGER NOT NULL)`

// openJournal opens the journal in dir (created if missing) and first replays into the store what
// a previous run journaled but did not commit. It returns how many lease changes it replayed.
func openJournal(ctx context.Context, st *store.Store, dir string, log *slog.Logger) (*journal, int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("dhcp: journal: %w", err)
	}
	if _, err := st.DB.ExecContext(ctx, journalSchema); err != nil {
		return nil, 0, fmt.Errorf("dhcp: journal table: %w", err)
	}
	applied, err := journalApplied(ctx, st)
	if err != nil {
		return nil, 0, err
	}
	gens, err := segments(dir)
	if err != nil {
		return nil, 0, err
	}
	j := &journal{dir: dir, gen: applied, removed: applied}
	var rec journalRecord
	for _, g := range gens {
		j.gen = max(j.gen, g)
		if g <= applied {
			continue
		}
		r, err := readSegment(j.path(g), log)
		if err != nil {
			return nil, 0, err
		}
		rec.Leases = append(rec.Leases, r.Leases...)
		rec.Events = append(rec.Events, r.Events...)
	}
	if j.gen > applied {
		// Replayed changes keep the times they were made at: a lease's row is as it was acknowledged.
		if err := persist(ctx, st, rec.Leases, rec.Events, j.gen); err != nil {
			return nil, 0, fmt.Errorf("dhcp: replay the journal: %w", err)
		}
	}
	for _, g := range gens {
		if err := os.Remove(j.path(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("dhcp: journal: %w", err)
		}
	}
	j.removed = j.gen
	return j, len(rec.Leases), nil
}

func journalApplied(ctx context.Context, st *store.Store) (uint64, error) {
	var applied int64
	err := st.DB.QueryRowContext(ctx, `SELECT applied FROM dhcp_journal WHERE id = 1`).Scan(&applied)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("dhcp: journal table: %w", err)
	}
	return uint64(applied), nil
}

// segments lists the generations of the segment files in dir, oldest first.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("dhcp: journal: %w", err)
	}
	var gens []uint64
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), "seg-")
		if !ok {
			continue
		}
		if g, err := strconv.ParseUint(name, 16, 64); err == nil {
			gens = append(gens, g)
		}
	}
	slices.Sort(gens)
	return gens, nil
}

func (j *journal) path(gen uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("seg-%016x", gen))
}

// readSegment reads a segment's records. A record that is cut short or does not match its
// checksum ends the segment, with a warning: only a crash of the machine (not of the process)
// while appending leaves one, and what follows it cannot be trusted.
func readSegment(path string, log *slog.Logger) (journalRecord, error) {
	var out journalRecord
	data, err := os.ReadFile(path)
	if err != nil {
		return out, fmt.Errorf("dhcp: journal: %w", err)
	}
	for off := 0; off < len(data); {
		if len(data)-off < recordHeader {
			break
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 {
			break
		}
		sum := binary.LittleEndian.Uint32(data[off+4:])
		body := data[off+recordHeader:]
		if n > len(body) || crc32.Checksum(body[:n], castagnoli) != sum {
			log.Warn("dhcp: journal record cut short or corrupt; the rest of its segment is skipped", "segment", path, "offset", off)
			break
		}
		r, err := decodeRecord(body[:n])
		if err != nil {
			log.Warn("dhcp: journal record unreadable; the rest of its segment is skipped", "segment", path, "offset", off, "err", err)
			break
		}
		out.Leases = append(out.Leases, r.Leases...)
		out.Events = append(out.Events, r.Events...)
		off += recordHeader + n
	}
	return out, nil
}

// append copies one record into the mapped segment. On an error nothing is appended and the
// caller must make the changes durable another way.
func (j *journal) append(ls []Lease, evs []Event) error {
	var err error
	j.buf, err = appendRecord(append(j.buf[:0], make([]byte, recordHeader)...), ls, evs)
	if err != nil {
		return err
	}
	body := j.buf[recordHeader:]
	binary.LittleEndian.PutUint32(j.buf, uint32(len(body)))
	binary.LittleEndian.PutUint32(j.buf[4:], crc32.Checksum(body, castagnoli))
	if j.seg != nil && len(j.seg)-j.off < len(j.buf)+recordHeader {
		j.full = append(j.full, j.seg) // unmapped at the rotation: a mapping is cheap to keep
		j.seg = nil
	}
	if j.seg == nil {
		if err := j.open(max(segmentSize, len(j.buf)+recordHeader)); err != nil {
			return err
		}
	}
	// The payload first and its header last: a record cut short by a crash mid-copy is one a
	// reader sees as the end (a zero header) or rejects (a wrong checksum). Its ACK had not left.
	copy(j.seg[j.off+recordHeader:], body)
	copy(j.seg[j.off:], j.buf[:recordHeader])
	j.off += len(j.buf)
	return nil
}

// open allocates and maps the next segment.
func (j *journal) open(size int) error {
	path := j.path(j.gen + 1)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("dhcp: journal: %w", err)
	}
	defer f.Close() // the mapping outlives the descriptor
	fail := func(err error) error {
		os.Remove(path)
		return fmt.Errorf("dhcp: journal segment: %w", err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		return fail(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	j.seg, j.off = m, 0
	j.gen++
	return nil
}

// rotate ends the current segment and returns the newest generation written: everything in the
// segments up to it has been handed to the commit stage.
func (j *journal) rotate() uint64 {
	j.unmap()
	return j.gen
}

func (j *journal) unmap() {
	for _, m := range append(j.full, j.seg) {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	j.full, j.seg, j.off = j.full[:0], nil, 0
}

// drop removes the segments up to gen, once a transaction recording gen as applied committed.
func (j *journal) drop(gen uint64, log *slog.Logger) {
	for ; j.removed < gen; j.removed++ {
		if err := os.Remove(j.path(j.removed + 1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			// Harmless for correctness (the table says it is applied), but it should not pile up.
			log.Warn("dhcp: remove an applied journal segment", "err", err)
		}
	}
}

// close ends the current segment (at shutdown, after the final commit).
func (j *journal) close() { j.unmap() }
