package dhcp

import (
	"cmp"
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
// batch's durable changes to the journal and sends the ACKs at once, smoothly, like the OFFERs;
// the commit stage then writes everything to SQLite in large transactions (one per LazyFlush).
//
// The journal is a few segment files, each allocated once (fallocate: a full disk then fails
// cleanly at allocation, never as a SIGBUS on a write through the mapping) and mapped into memory
// for the journal's life. An append is a copy into the mapping: no system call, and, since the
// segments are reused, no page fault either (fresh pages of a new file cost a fault each, which was
// most of the journal's cost). Pages written through a shared mapping are the file's pages in the
// kernel's page cache, so they survive the process being killed exactly as a write would. That is
// the same promise as the database's (SQLite in WAL mode with synchronous=NORMAL, as the store
// opens it): neither survives losing power before the operating system writes it out.
//
// Each segment starts with the generation it holds; every record's checksum covers that
// generation, so the records a reused segment still holds from an earlier generation read as the
// end. The commit stage starts a new generation each time it takes the pending writes (and a
// segment that fills starts one too), so a generation's records are all in the transaction that
// takes it (or a later one, if that one fails). That transaction records the highest generation it covers in the dhcp_journal table, and
// the segments up to it are free again. At start-up, segments up to the recorded generation are
// not read (their changes are stored already: re-applying them would record their events twice),
// and later ones are replayed in one transaction before the server answers anything.
type journal struct {
	dir     string
	slots   []*segment
	cur     *segment // being appended to; nil until the first append after a rotation
	gen     uint64   // the newest generation begun
	applied uint64   // generations up to this one are in the database: their segments are free
	buf     []byte
}

// segment is one mapped segment file.
type segment struct {
	path string
	m    []byte
	gen  uint64 // the generation it holds (free once gen <= journal.applied)
	off  int    // where the next record goes
}

// segmentSize is a segment's size. A generation normally holds one LazyFlush of changes (about
// 100 KB at 5,000 exchanges a second); one that fills a segment continues in another.
const segmentSize = 4 << 20

// segmentHeader is a segment's first bytes: the generation it holds (little-endian uint64).
const segmentHeader = 8

// journalRecord is one append: the durable changes of one handled batch, in the order the lease
// table made them.
type journalRecord struct {
	Leases []Lease
	Events []Event
}

// A record: the length of its payload and a CRC-32C of the segment's generation followed by the
// payload (both little-endian uint32), then the payload (journal_codec.go). A zero length, or a
// checksum that does not match, ends the segment.
const recordHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func recordSum(gen uint64, payload []byte) uint32 {
	var g [8]byte
	binary.LittleEndian.PutUint64(g[:], gen)
	return crc32.Update(crc32.Checksum(g[:], castagnoli), castagnoli, payload)
}

// journalSchema is the table that says which generations the database already holds. It is the
// DHCP server's own (it is created here, not by the schema migration) and holds one row.
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
	j := &journal{dir: dir, gen: applied, applied: applied}
	if err := j.load(); err != nil {
		j.close()
		return nil, 0, err
	}
	// Oldest generation first; records within a segment are in order.
	slices.SortFunc(j.slots, func(a, b *segment) int { return cmp.Compare(a.gen, b.gen) })
	var rec journalRecord
	for _, sg := range j.slots {
		j.gen = max(j.gen, sg.gen)
		if sg.gen <= applied {
			continue
		}
		r := sg.records(log)
		rec.Leases = append(rec.Leases, r.Leases...)
		rec.Events = append(rec.Events, r.Events...)
	}
	if j.gen > applied {
		// Replayed changes keep the times they were made at: a lease's row is as it was acknowledged.
		if err := persist(ctx, st, rec.Leases, rec.Events, j.gen); err != nil {
			j.close()
			return nil, 0, fmt.Errorf("dhcp: replay the journal: %w", err)
		}
		j.applied = j.gen
	}
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

// load maps the segment files already in the directory.
func (j *journal) load() error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("dhcp: journal: %w", err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "seg-") {
			continue
		}
		path := filepath.Join(j.dir, e.Name())
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("dhcp: journal: %w", err)
		}
		if info.Size() < segmentHeader+recordHeader {
			continue // cut short while being created: it never held a record
		}
		m, err := mapFile(path, int(info.Size()), false)
		if err != nil {
			return err
		}
		j.slots = append(j.slots, &segment{path: path, m: m, gen: binary.LittleEndian.Uint64(m)})
	}
	return nil
}

// mapFile maps path (created and allocated to size when create is set) for reading and writing.
func mapFile(path string, size int, create bool) ([]byte, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dhcp: journal: %w", err)
	}
	defer f.Close() // the mapping outlives the descriptor
	if create {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("dhcp: journal segment: %w", err)
		}
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		if create {
			os.Remove(path)
		}
		return nil, fmt.Errorf("dhcp: journal segment: %w", err)
	}
	return m, nil
}

// records reads a segment's records of its generation. A record cut short or failing its checksum
// ends the segment: either the end of what this generation wrote (what follows is an earlier
// generation's, or zeros), or a record a crash of the machine (not only of the process) cut short.
// Its ACK had not left: a record's header is written after its payload.
func (sg *segment) records(log *slog.Logger) journalRecord {
	var out journalRecord
	data := sg.m
	for off := segmentHeader; len(data)-off >= recordHeader; {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		body := data[off+recordHeader:]
		if n == 0 || n > len(body) || recordSum(sg.gen, body[:n]) != binary.LittleEndian.Uint32(data[off+4:]) {
			break
		}
		r, err := decodeRecord(body[:n])
		if err != nil {
			log.Warn("dhcp: journal record unreadable; the rest of its segment is skipped", "segment", sg.path, "offset", off, "err", err)
			break
		}
		out.Leases = append(out.Leases, r.Leases...)
		out.Events = append(out.Events, r.Events...)
		off += recordHeader + n
	}
	return out
}

// append copies one record into the current segment. On an error nothing is appended and the
// caller must make the changes durable another way.
func (j *journal) append(ls []Lease, evs []Event) error {
	var err error
	j.buf, err = appendRecord(append(j.buf[:0], make([]byte, recordHeader)...), ls, evs)
	if err != nil {
		return err
	}
	need := len(j.buf) + recordHeader // room for the record and for the zero header after it
	if j.cur != nil && len(j.cur.m)-j.cur.off < need {
		j.cur = nil // full
	}
	if j.cur == nil {
		// The first append after a rotation, or after a segment filled, begins a generation: one
		// segment per generation keeps the replay's order plain.
		j.gen++
		if j.cur, err = j.take(need); err != nil {
			return err
		}
	}
	sg := j.cur
	body := j.buf[recordHeader:]
	binary.LittleEndian.PutUint32(j.buf, uint32(len(body)))
	binary.LittleEndian.PutUint32(j.buf[4:], recordSum(sg.gen, body))
	// The payload first and its header last: a record cut short by a crash mid-copy reads as the
	// end or fails its checksum. The zero header after it ends the segment for a reader.
	copy(sg.m[sg.off+recordHeader:], body)
	clear(sg.m[sg.off+len(j.buf) : sg.off+len(j.buf)+recordHeader])
	copy(sg.m[sg.off:], j.buf[:recordHeader])
	sg.off += len(j.buf)
	return nil
}

// take returns a free segment with room for need bytes after its header, set to the current
// generation, creating one if none is free.
func (j *journal) take(need int) (*segment, error) {
	var sg *segment
	for _, s := range j.slots {
		if s.gen <= j.applied && len(s.m) >= segmentHeader+need {
			sg = s
			break
		}
	}
	if sg == nil {
		size := max(segmentSize, segmentHeader+need)
		var path string
		for i := len(j.slots); ; i++ { // a name a failed creation may have left is skipped
			path = filepath.Join(j.dir, fmt.Sprintf("seg-%d", i))
			if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		m, err := mapFile(path, size, true)
		if err != nil {
			return nil, err
		}
		sg = &segment{path: path, m: m}
		j.slots = append(j.slots, sg)
	}
	// The old generation's first record goes before the new generation is named: a crash in
	// between leaves a segment that reads as empty under either generation.
	clear(sg.m[segmentHeader : segmentHeader+recordHeader])
	binary.LittleEndian.PutUint64(sg.m, j.gen)
	sg.gen, sg.off = j.gen, segmentHeader
	return sg, nil
}

// rotate ends the current generation and returns the newest generation written: everything in the
// segments up to it has been handed to the commit stage.
func (j *journal) rotate() uint64 {
	j.cur = nil
	return j.gen
}

// drop frees the segments up to gen, once a transaction recording gen as applied committed.
func (j *journal) drop(gen uint64) {
	j.applied = max(j.applied, gen)
}

// close unmaps the segments (at shutdown, after the final commit). The files stay, for the next
// start to reuse.
func (j *journal) close() {
	for _, sg := range j.slots {
		_ = unix.Munmap(sg.m)
	}
	j.slots, j.cur = nil, nil
}
