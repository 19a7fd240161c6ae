package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
)

// Config starts a Server.
type Config struct {
	Mode Mode
	// Interface is where the server listens (SO_BINDTODEVICE); its first IPv4 address is the
	// server identifier unless ServerIP is set.
	Interface string
	ServerIP  netip.Addr
	Store     *store.Store
	Boot      Boot
	// Conn, when set, is used instead of opening port 67 on Interface (tests open it inside a
	// network namespace). RogueConn likewise replaces the port-68 listener that sees other
	// servers' offers; without either, rogue detection is off.
	Conn, RogueConn net.PacketConn
	// PXEConn replaces, in proxy mode, the port-4011 listener: PXE ROMs that took their address
	// from another server send their boot-server REQUEST there, unicast, and expect the ACK back
	// at their own address and port.
	PXEConn net.PacketConn
	// LeaseTime, OfferHold, Quarantine: see Handler. Zero picks 1 h, 30 s, 10 min.
	LeaseTime, OfferHold, Quarantine time.Duration
	// BatchMax bounds the packets handled per transaction (group commit); default 512.
	BatchMax int
	// LazyFlush bounds how long lazy writes (offers, rogue and shadow events: see Server.lazy) wait
	// for a commit to ride with before the worker commits them on their own (default 200 ms).
	LazyFlush time.Duration
	// Linger is how long the worker waits for more packets once a batch has begun (default 5 ms;
	// negative: not at all). A transaction costs far more than a packet, so on a moderately busy
	// network a few milliseconds of latency buy batches several packets long instead of one
	// transaction per packet; under heavy load batches fill without waiting.
	Linger time.Duration
	// The inventory snapshot is reloaded when the event log shows a change to a network, range,
	// NIC or allocation (or a machine deleted), at most once per Debounce (default 200 ms), and
	// in any case every Refresh (default 1 min) as a safety net for writes that bypass the log.
	Refresh, Debounce time.Duration
	Log               *slog.Logger
}

// Status is what `dhcp { … }` reports.
type Status struct {
	Mode      Mode
	Interface string
	Leases    int // addresses currently held (offered, bound or quarantined)
	Received  uint64
	Answered  uint64
	Malformed uint64 // packets that did not parse: dropped, never answered
	Failed    uint64 // batches whose commit failed (their ACKs were not sent)
}

// PoolUse is the use of one network's discovery pools.
type PoolUse struct {
	NetworkID  int
	Network    string
	Used, Free int
}

// Server is a running DHCP server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	conn   net.PacketConn
	mu     sync.Mutex // guards h (the worker holds it while handling a batch)
	h      *Handler
	in     chan packet
	done   chan struct{}
	cancel context.CancelFunc

	received, answered, malformed, failed atomic.Uint64
	rogueSeen                             map[netip.Addr]time.Time

	// lazy holds what must be recorded but need not be durable before any reply: offers (their
	// OFFERED rows and lease.offered events) and the rogue, shadow and exhaustion events. An OFFER
	// is sent at once and its writes ride with the next commit (usually the REQUEST's that follows
	// it), or are committed on their own after LazyFlush. A crash loses at most those: a lost
	// offer is harmless (the in-memory table reserved the address while the server ran; after a
	// restart the client's REQUEST is checked against the stored leases, or it starts over), and
	// halving the transactions per exchange is what group commit alone could not do at low rates.
	lazy      []Lease
	lazyEvs   []Event
	lazySince time.Time

	out *ipv4.PacketConn // s.conn for batch writes, when it is a UDP socket
}

type packet struct {
	data  []byte
	peer  net.Addr
	rogue bool
	pxe   bool // from the port-4011 listener: answer to peer through it
}

// Start loads the leases and the inventory, opens the socket and serves until ctx ends or Close.
func (c Config) Start(ctx context.Context) (*Server, error) {
	if c.Mode == Off || c.Mode == "" {
		return nil, errors.New("dhcp: mode is off")
	}
	if c.Store == nil {
		return nil, errors.New("dhcp: no store")
	}
	if c.BatchMax <= 0 {
		c.BatchMax = 512
	}
	if c.Refresh <= 0 {
		c.Refresh = time.Minute
	}
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.Debounce <= 0 {
		c.Debounce = 200 * time.Millisecond
	}
	if c.LazyFlush <= 0 {
		c.LazyFlush = 200 * time.Millisecond
	}
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	sid := c.ServerIP
	if !sid.IsValid() {
		var err error
		if sid, err = ifaceAddr(c.Interface); err != nil {
			return nil, err
		}
	}
	inv, err := LoadInventory(ctx, c.Store)
	if err != nil {
		return nil, err
	}
	leases, err := LoadLeases(ctx, c.Store)
	if err != nil {
		return nil, err
	}
	conn := c.Conn
	if conn == nil {
		uc, err := server4.NewIPv4UDPConn(c.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort})
		if err != nil {
			return nil, fmt.Errorf("dhcp: listen on %s:67: %w", c.Interface, err)
		}
		growReadBuffer(uc, log)
		conn = uc
		if c.RogueConn == nil && c.Mode != Shadow {
			if rc, err := server4.NewIPv4UDPConn(c.Interface, &net.UDPAddr{Port: dhcpv4.ClientPort}); err == nil {
				c.RogueConn = rc
			} else {
				log.Warn("dhcp: rogue-server detection off (cannot listen on port 68)", "err", err)
			}
		}
		if c.PXEConn == nil && c.Mode == Proxy {
			pc, err := server4.NewIPv4UDPConn(c.Interface, &net.UDPAddr{Port: PXEPort})
			if err != nil {
				conn.Close()
				return nil, fmt.Errorf("dhcp: listen on %s:%d: %w", c.Interface, PXEPort, err)
			}
			c.PXEConn = pc
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{cfg: c, log: log, conn: conn, in: make(chan packet, 4096), done: make(chan struct{}), cancel: cancel,
		rogueSeen: map[netip.Addr]time.Time{},
		h: &Handler{Mode: c.Mode, ServerID: sid, Boot: c.Boot, Inv: inv, Leases: NewLeases(leases),
			LeaseTime: c.LeaseTime, OfferHold: c.OfferHold, Quarantine: c.Quarantine}}
	go s.read(conn, packet{})
	if c.RogueConn != nil {
		go s.read(c.RogueConn, packet{rogue: true})
	}
	if c.PXEConn != nil && c.Mode == Proxy {
		go s.read(c.PXEConn, packet{pxe: true})
	}
	go s.refresh(ctx)
	go s.work(ctx)
	go func() {
		<-ctx.Done()
		conn.Close()
		if c.RogueConn != nil {
			c.RogueConn.Close()
		}
		if c.PXEConn != nil {
			c.PXEConn.Close()
		}
	}()
	log.Info("dhcp: serving", "mode", c.Mode, "interface", c.Interface, "server", sid, "networks", len(inv.Networks), "leases", len(leases))
	return s, nil
}

// readBuffer is the receive buffer asked for on port 67. The kernel's default (about 200 KiB,
// some 500 DHCP packets with their overhead) overflows while the worker commits a batch under a
// burst; the reader goroutine drains it into s.in, but only when it is scheduled.
const readBuffer = 8 << 20

// growReadBuffer raises the socket's receive buffer past net.core.rmem_max when allowed (root:
// SO_RCVBUFFORCE), else as far as rmem_max lets SetReadBuffer go.
func growReadBuffer(c *net.UDPConn, log *slog.Logger) {
	if rc, err := c.SyscallConn(); err == nil {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer)
		}); err == nil && serr == nil {
			return
		}
	}
	if err := c.SetReadBuffer(readBuffer); err != nil {
		log.Debug("dhcp: receive buffer", "err", err)
	}
}

func ifaceAddr(name string) (netip.Addr, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp: interface %q: %w", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp: interface %q: %w", name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if v, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && ipn.IP.To4() != nil {
				return v, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("dhcp: interface %q has no IPv4 address", name)
}

// Close stops the server and waits for the batch in hand to finish.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// Status reports counters and the number of held leases.
func (s *Server) Status() Status {
	s.mu.Lock()
	held := s.h.Leases.held
	s.mu.Unlock()
	return Status{Mode: s.cfg.Mode, Interface: s.cfg.Interface, Leases: held, Received: s.received.Load(),
		Answered: s.answered.Load(), Malformed: s.malformed.Load(), Failed: s.failed.Load()}
}

// PoolUse reports, per network with a discovery pool, how many pool addresses are held and free,
// from the counts the lease table keeps (no walk over the addresses).
func (s *Server) PoolUse() []PoolUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PoolUse
	for i := range s.h.Inv.Networks {
		n := &s.h.Inv.Networks[i]
		if len(n.Pools) == 0 {
			continue
		}
		u := PoolUse{NetworkID: n.ID, Network: n.Name}
		u.Used, u.Free = s.h.PoolUse(n)
		out = append(out, u)
	}
	return out
}

// PXEPort is where PXE clients ask a proxy boot server for their boot file (PXE 2.1, RFC 4578).
const PXEPort = 4011

// readBatch is how many packets one read may return (recvmmsg on a UDP socket).
const readBatch = 64

// read queues what arrives on conn, each packet marked like kind.
func (s *Server) read(conn net.PacketConn, kind packet) {
	if uc, ok := conn.(*net.UDPConn); ok {
		s.readUDP(uc, kind)
		return
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dhcp: read", "err", err)
			continue
		}
		// A copy of the packet's size (about 300 bytes), not a fresh 1,500-byte buffer per packet.
		s.queue(packet{data: append([]byte(nil), buf[:n]...), peer: peer, rogue: kind.rogue, pxe: kind.pxe})
	}
}

// readUDP is read for a UDP socket: one recvmmsg returns every packet waiting (up to readBatch),
// so a burst costs one system call and one wake-up of this goroutine, not one per packet.
func (s *Server) readUDP(uc *net.UDPConn, kind packet) {
	pc := ipv4.NewPacketConn(uc)
	msgs := make([]ipv4.Message, readBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dhcp: read", "err", err)
			continue
		}
		for i := range msgs[:n] {
			m := &msgs[i]
			s.queue(packet{data: append([]byte(nil), m.Buffers[0][:m.N]...), peer: m.Addr, rogue: kind.rogue, pxe: kind.pxe})
		}
	}
}

func (s *Server) queue(p packet) {
	select {
	case s.in <- p:
	default: // the worker is behind: drop, as a loaded server must; the client retries
	}
}

// inventoryTypes are the event object types whose changes alter what the handler decides from.
var inventoryTypes = []string{"network", "iprange", "nic", "ipallocation"}

// refresh reloads the inventory snapshot when the event feed shows a change to it. Every commit
// pokes the hub, the server's own lease batches included, so a poke only leads to one indexed
// look at the events since the last one seen, at most once per Debounce.
func (s *Server) refresh(ctx context.Context) {
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	client := s.cfg.Store.Client
	last, err := events.LastSeq(ctx, client)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("dhcp: read the event feed", "err", err)
	}
	for {
		var poked <-chan struct{}
		if s.cfg.Store.Hub != nil {
			poked = s.cfg.Store.Hub.Wait()
		}
		reload := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			reload = true
		case <-poked:
			select { // let a burst of commits settle into one look
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.Debounce):
			}
			now, err := events.LastSeq(ctx, client)
			if err != nil || now <= last {
				continue
			}
			reload, err = client.Event.Query().Where(event.SeqGT(last), event.SeqLTE(now),
				event.Or(event.ObjectTypeIn(inventoryTypes...), event.Kind("machine.deleted"))).Exist(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("dhcp: read the event feed", "err", err)
				}
				continue
			}
			last = now
		}
		if !reload {
			continue
		}
		inv, err := LoadInventory(ctx, s.cfg.Store)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("dhcp: reload inventory", "err", err)
			}
			continue
		}
		s.mu.Lock()
		s.h.Inv = inv
		s.mu.Unlock()
	}
}

type outgoing struct {
	reply  *dhcpv4.DHCPv4
	dest   net.Addr
	conn   net.PacketConn
	commit bool
}

// work is the one goroutine that runs the handler. It takes every packet waiting (up to
// BatchMax), handles them, writes all their lease changes and events in one transaction, and
// only then sends the replies: an ACK never leaves before its lease is durable. A batch with
// nothing durable to write (offers only) commits nothing: its writes wait in s.lazy.
func (s *Server) work(ctx context.Context) {
	defer close(s.done)
	defer s.flushLazy()
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	batch := make([]packet, 0, s.cfg.BatchMax)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	lazy := time.NewTimer(time.Hour)
	lazy.Stop()
	lazyArmed := false
	for {
		batch = batch[:0]
		if !lazyArmed && len(s.lazy)+len(s.lazyEvs) > 0 {
			lazy.Reset(max(0, s.cfg.LazyFlush-time.Since(s.lazySince)))
			lazyArmed = true
		}
		select {
		case <-ctx.Done():
			return
		case <-lazy.C:
			lazyArmed = false
			if len(s.lazy)+len(s.lazyEvs) > 0 {
				if err := s.persist(ctx, nil, nil); err != nil && ctx.Err() == nil {
					s.log.Warn("dhcp: persist offers and events", "err", err)
				}
			}
			continue
		case <-expire.C:
			s.mu.Lock()
			ls, evs := s.h.Expire(time.Now())
			s.mu.Unlock()
			if len(ls) > 0 {
				if err := s.persist(ctx, ls, evs); err != nil && ctx.Err() == nil {
					s.log.Warn("dhcp: persist expiry", "err", err)
				}
			}
			continue
		case p := <-s.in:
			batch = append(batch, p)
		}
		if s.cfg.Linger > 0 && len(s.in) < s.cfg.BatchMax {
			// Sleep through the linger instead of waking for each packet: the packets queue in
			// s.in (4096 deep) and are drained below, one wake-up per batch instead of one per packet.
			linger.Reset(s.cfg.Linger)
			select {
			case <-linger.C:
			case <-ctx.Done():
				linger.Stop()
			}
		}
	drain:
		for len(batch) < s.cfg.BatchMax {
			select {
			case p := <-s.in:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		s.handleBatch(ctx, batch)
		if lazyArmed && len(s.lazy)+len(s.lazyEvs) == 0 {
			lazy.Stop()
			lazyArmed = false
		}
	}
}

// lazyMax bounds the lazy writes held: past it they are committed with the batch that reached it.
const lazyMax = 4096

// flushLazy commits what is still lazy when the server stops (its context is already done).
func (s *Server) flushLazy() {
	if len(s.lazy)+len(s.lazyEvs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.persist(ctx, nil, nil); err != nil {
		s.log.Warn("dhcp: persist offers and events at shutdown", "err", err)
	}
}

func (s *Server) handleBatch(ctx context.Context, batch []packet) {
	var (
		changed []Lease
		evs     []Event
		out     []outgoing
	)
	now := time.Now()
	lazy := func(ls []Lease, es ...Event) {
		if len(s.lazy)+len(s.lazyEvs) == 0 {
			s.lazySince = now
		}
		s.lazy = append(s.lazy, ls...)
		for _, e := range es {
			if e.At.IsZero() {
				e.At = now
			}
			s.lazyEvs = append(s.lazyEvs, e)
		}
	}
	s.mu.Lock()
	for _, p := range batch {
		s.received.Add(1)
		req, err := dhcpv4.FromBytes(p.data)
		if err != nil || req.OpCode == 0 {
			s.malformed.Add(1)
			continue
		}
		if p.rogue || req.OpCode == dhcpv4.OpcodeBootReply {
			if ev, ok := s.rogue(req, now); ok {
				lazy(nil, ev)
			}
			continue
		}
		r := s.h.Handle(req, now)
		if r.Commit {
			changed = append(changed, r.Changed...)
			evs = append(evs, r.Events...)
		} else {
			lazy(r.Changed, r.Events...)
		}
		if r.Reply == nil {
			continue
		}
		if s.cfg.Mode == Shadow {
			lazy(nil, Event{Kind: "dhcp.shadow", MAC: req.ClientHWAddr.String(), Addr: addrOf(r.Reply.YourIPAddr),
				Data: map[string]any{"mac": req.ClientHWAddr.String(), "reply": r.Reply.MessageType().String(),
					"address": r.Reply.YourIPAddr.String(), "bootfile": r.Reply.BootFileName, "to": r.Dest.String()}})
			continue
		}
		o := outgoing{reply: r.Reply, dest: r.Dest, conn: s.conn, commit: r.Commit}
		if p.pxe {
			// A boot-server REQUEST on 4011 is answered to where it came from, from 4011.
			o.dest, o.conn = p.peer, s.cfg.PXEConn
		}
		out = append(out, o)
	}
	s.mu.Unlock()
	committed := true
	if len(changed) > 0 || len(evs) > 0 || len(s.lazy)+len(s.lazyEvs) > lazyMax {
		if err := s.persist(ctx, changed, evs); err != nil {
			committed = false
			s.failed.Add(1)
			if ctx.Err() == nil {
				s.log.Error("dhcp: lease batch not committed: its acknowledgements are withheld", "err", err, "packets", len(batch))
			}
		}
	}
	s.send(out, committed)
}

// send writes the batch's replies (those that wait for a commit only if it committed): on a UDP
// socket with sendmmsg, as many per system call as there are.
func (s *Server) send(out []outgoing, committed bool) {
	var msgs []ipv4.Message
	var pc *ipv4.PacketConn
	for _, o := range out {
		if o.commit && !committed {
			continue
		}
		b := encode(o.reply)
		if uc, ok := o.conn.(*net.UDPConn); ok && o.conn == s.conn {
			if pc == nil {
				pc = s.batchConn(uc)
			}
			msgs = append(msgs, ipv4.Message{Buffers: [][]byte{b}, Addr: o.dest})
			continue
		}
		if _, err := o.conn.WriteTo(b, o.dest); err != nil {
			s.log.Debug("dhcp: send", "to", o.dest, "err", err)
			continue
		}
		s.answered.Add(1)
	}
	for len(msgs) > 0 {
		n, err := pc.WriteBatch(msgs, 0)
		if n > 0 {
			s.answered.Add(uint64(n))
			msgs = msgs[n:]
			continue
		}
		// A message that cannot be sent (no route, …) must not hold back the others.
		s.log.Debug("dhcp: send", "to", msgs[0].Addr, "err", err)
		msgs = msgs[1:]
	}
}

func (s *Server) batchConn(uc *net.UDPConn) *ipv4.PacketConn {
	if s.out == nil {
		s.out = ipv4.NewPacketConn(uc)
	}
	return s.out
}

// rogue turns an OFFER from another server into a dhcp.rogue event, once per server per hour.
func (s *Server) rogue(req *dhcpv4.DHCPv4, now time.Time) (Event, bool) {
	if req.MessageType() != dhcpv4.MessageTypeOffer {
		return Event{}, false
	}
	sid := addrOf(req.ServerIdentifier())
	if !sid.IsValid() {
		sid = addrOf(req.ServerIPAddr)
	}
	if !sid.IsValid() || sid == s.h.ServerID {
		return Event{}, false
	}
	if last, ok := s.rogueSeen[sid]; ok && now.Sub(last) < time.Hour {
		return Event{}, false
	}
	s.rogueSeen[sid] = now
	return Event{Kind: "dhcp.rogue", Addr: addrOf(req.YourIPAddr), Data: map[string]any{
		"server": sid.String(), "offered": req.YourIPAddr.String(), "client": req.ClientHWAddr.String()}}, true
}

// persist commits the lazy writes waiting (first: they happened earlier) with ls and evs, in one
// transaction. The lazy writes are gone either way: on failure they are logged with the batch,
// not retried (none of them is an acknowledgement).
func (s *Server) persist(ctx context.Context, ls []Lease, evs []Event) error {
	if len(s.lazy)+len(s.lazyEvs) > 0 {
		ls = append(s.lazy, ls...)
		evs = append(s.lazyEvs, evs...)
		// The transaction below is done with them when persist returns: keep the arrays.
		defer func() {
			clear(evs) // drop the references to the events' data
			s.lazy, s.lazyEvs = ls[:0], evs[:0]
		}()
	}
	ctx = events.WithActor(ctx, "dhcp")
	return s.cfg.Store.Events.Tx(ctx, func(ctx context.Context, tx *entTx) error {
		if err := saveLeases(ctx, tx, s.cfg.Store.Dialect, ls); err != nil {
			return err
		}
		now := time.Now()
		for _, e := range evs {
			var mid *int
			if e.MachineID != 0 {
				m := e.MachineID
				mid = &m
			}
			obj, id := "dhcp", e.NetworkID
			if mid != nil {
				obj, id = "machine", *mid
			}
			at := e.At
			if at.IsZero() {
				at = now
			}
			if err := events.EmitAt(ctx, at, e.Kind, obj, id, mid, e.Data); err != nil {
				return err
			}
		}
		return nil
	})
}
