package dhcp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// The journal's record payload, in binary: encoding/json took half of the journal's cost, which
// sits on every acknowledgement's path. Layout (integers are varints):
//
//	version byte (1)
//	lease count, then per lease: network, address, MAC, state, expires, client id, hostname,
//	  machine, trace, trace time
//	event count, then per event: kind, MAC, address, network, machine, at, expires, trace, data
//
// Strings are a length and bytes, addresses a presence byte and 4 bytes, times a presence byte and
// Unix nanoseconds, data a length and its JSON (0: none).
const codecVersion = 1

var errRecord = errors.New("dhcp: journal record malformed")

func appendRecord(b []byte, ls []Lease, evs []Event) ([]byte, error) {
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(len(ls)))
	for i := range ls {
		l := &ls[i]
		b = binary.AppendVarint(b, int64(l.NetworkID))
		b = appendAddr(b, l.Addr)
		b = appendString(b, l.MAC)
		b = appendString(b, string(l.State))
		b = appendTime(b, l.Expires)
		b = appendString(b, l.ClientID)
		b = appendString(b, l.Hostname)
		b = binary.AppendVarint(b, int64(l.MachineID))
		b = appendString(b, l.Trace)
		b = appendTime(b, l.TraceAt)
	}
	b = binary.AppendUvarint(b, uint64(len(evs)))
	for i := range evs {
		e := &evs[i]
		b = appendString(b, e.Kind)
		b = appendString(b, e.MAC)
		b = appendAddr(b, e.Addr)
		b = binary.AppendVarint(b, int64(e.NetworkID))
		b = binary.AppendVarint(b, int64(e.MachineID))
		b = appendTime(b, e.At)
		b = appendTime(b, e.Expires)
		b = appendString(b, e.Trace)
		if e.Data == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		js, err := json.Marshal(e.Data)
		if err != nil {
			return nil, fmt.Errorf("dhcp: journal: event %s: %w", e.Kind, err)
		}
		b = binary.AppendUvarint(b, uint64(len(js)))
		b = append(b, js...)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.Is4() {
		return append(b, 0)
	}
	v := a.As4()
	return append(append(b, 1), v[:]...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	return binary.AppendVarint(append(b, 1), t.UnixNano())
}

// decoder reads a record payload; the first malformed field sets err and every later read
// returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = errRecord, nil }

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) addr() netip.Addr {
	switch d.byte() {
	case 0:
		return netip.Addr{}
	case 1:
		if len(d.b) < 4 {
			d.fail()
			return netip.Addr{}
		}
		a := netip.AddrFrom4([4]byte(d.b[:4]))
		d.b = d.b[4:]
		return a
	}
	d.fail()
	return netip.Addr{}
}

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(0, int64(d.int()))
	}
	d.fail()
	return time.Time{}
}

// count reads a list length, refusing one longer than the bytes left could hold (each element
// takes at least min bytes), so a corrupt length cannot make a huge allocation.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func decodeRecord(b []byte) (journalRecord, error) {
	d := &decoder{b: b}
	var r journalRecord
	if v := d.byte(); v != codecVersion {
		return r, fmt.Errorf("%w: version %d", errRecord, v)
	}
	if n := d.count(10); n > 0 { // an empty lease takes 10 bytes
		r.Leases = make([]Lease, n)
	}
	for i := range r.Leases {
		l := &r.Leases[i]
		l.NetworkID = d.int()
		l.Addr = d.addr()
		l.MAC = d.string()
		l.State = State(d.string())
		l.Expires = d.time()
		l.ClientID = d.string()
		l.Hostname = d.string()
		l.MachineID = d.int()
		l.Trace = d.string()
		l.TraceAt = d.time()
	}
	if n := d.count(9); n > 0 { // an empty event takes 9
		r.Events = make([]Event, n)
	}
	for i := range r.Events {
		e := &r.Events[i]
		e.Kind = d.string()
		e.MAC = d.string()
		e.Addr = d.addr()
		e.NetworkID = d.int()
		e.MachineID = d.int()
		e.At = d.time()
		e.Expires = d.time()
		e.Trace = d.string()
		if js := d.bytes(); len(js) > 0 && d.err == nil {
			if err := json.Unmarshal(js, &e.Data); err != nil {
				return r, fmt.Errorf("%w: event data: %v", errRecord, err)
			}
		}
	}
	if d.err == nil && len(d.b) > 0 {
		return r, fmt.Errorf("%w: %d bytes left over", errRecord, len(d.b))
	}
	return r, d.err
}
