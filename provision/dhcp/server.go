package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
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
	// BatchMax bounds the packets handled in one go between two hand-overs to the commit stage
	// (default 512). Transactions are not bounded by it: see Server.commit.
	BatchMax int
	// Journal, when set, is a directory where acknowledged lease changes are appended before
	// their ACKs leave, so that ACKs need not wait for a database transaction (see journal). It
	// must be on the machine's own disk and belong to this store: serve sets it beside a SQLite
	// database file. Without it, each ACK waits for the transaction that stores its binding.
	Journal string
	// JournalBacklog bounds the journaled writes waiting for the database (default 262,144, some
	// tens of MB). While the database cannot commit (locked, full, failing), journaled ACKs keep
	// leaving and their writes pile up in memory and in journal segments; past this bound ACKs
	// wait for a transaction again, so a long outage slows clients (they retry) instead of
	// growing the server without limit.
	JournalBacklog int
	// LazyFlush bounds how long lazy writes (offers, rogue and shadow events: see Server.lazy) wait
	// for a commit to ride with before the worker commits them on their own (default 200 ms).
	LazyFlush time.Duration
	// Linger is how long the commit stage waits, once a write that must be durable arrives, for
	// more to join it (default 5 ms; negative: not at all). A transaction costs far more than a
	// packet, so on a moderately busy network a little latency buys transactions several
	// packets long; under heavy load they fill while the previous one commits.
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
	// Dropped counts packets the kernel dropped because the server's socket buffer was full
	// (the server too far behind: unanswered, as a loaded server must; clients retry), as
	// SO_RXQ_OVFL reports them.
	Dropped uint64
	// Failed counts transactions whose commit failed. Without a journal their ACKs were not
	// sent; with one, the ACKs had left and the writes are retried.
	Failed uint64
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
	done   chan struct{}
	cancel context.CancelFunc

	received, answered, malformed, dropped, failed atomic.Uint64
	rogueSeen                                      map[netip.Addr]time.Time

	// pmu guards pend, the writes and replies the handling goroutine (work) hands to the commit
	// stage (commit). The two run side by side: packets keep being handled, and OFFERs keep
	// leaving, while a transaction commits. Before, one goroutine handled a batch, committed it and
	// only then sent every reply of it at once; under load those bursts of hundreds of replies
	// overflowed the receive buffers of relays and clients (perfdhcp lost 2% of its answers in
	// its own socket at 4,000 exchanges/s while the server had sent them all).
	pmu      sync.Mutex
	pend     pending
	kick     chan struct{}  // cap 1: pend has something the commit stage should look at
	stop     chan struct{}  // closed once nothing more can be handed to the commit stage
	handlers sync.WaitGroup // the readers and the expiry tick: what hands work to the commit stage

	out *ipv4.PacketConn // s.conn for batch writes, when it is a UDP socket

	jr          *journal // nil: ACKs wait for their commit (guarded by pmu)
	backlogFull bool     // the journal's backlog is at JournalBacklog (guarded by pmu)
}

// pending is what waits for the next transaction.
//
// Durable writes (a REQUEST's binding, a DECLINE, a RELEASE, expiry) are committed as soon as the
// commit stage is free, and the replies that depend on them (acks) leave only after that commit.
// Lazy writes are what must be recorded but need not be durable before any reply: offers (their
// OFFERED rows and lease.offered events) and the rogue, shadow and exhaustion events. An OFFER is
// sent at once and its writes ride with the next commit (usually the REQUEST's that follows it),
// or are committed on their own after LazyFlush. A crash loses at most those: a lost offer is
// harmless (the in-memory table reserved the address while the server ran; after a restart the
// client's REQUEST is checked against the stored leases, or it starts over), and halving the
// transactions per exchange is what group commit alone could not do at low rates.
type pending struct {
	leases  []Lease
	evs     []Event
	acks    []outgoing
	durable bool      // something in leases/evs must be committed before acks leave
	since   time.Time // when the oldest lazy write arrived (zero: none waits)
}

func (p *pending) empty() bool { return len(p.leases)+len(p.evs)+len(p.acks) == 0 }

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
	if c.JournalBacklog <= 0 {
		c.JournalBacklog = 1 << 18
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
	// The feed position is read before the inventory: a change committed in between is then
	// after it, and refresh reloads for it.
	feedSeq, err := events.LastSeq(ctx, c.Store.Client)
	if err != nil {
		return nil, fmt.Errorf("dhcp: read the event feed: %w", err)
	}
	inv, err := LoadInventory(ctx, c.Store)
	if err != nil {
		return nil, err
	}
	var jr *journal
	if c.Journal != "" {
		var replayed int
		if jr, replayed, err = openJournal(ctx, c.Store, c.Journal, log); err != nil {
			return nil, err
		}
		if replayed > 0 {
			// Only an unclean stop leaves anything to replay: worth an operator's notice.
			log.Warn("dhcp: journal replayed (the last run did not stop cleanly)", "leases", replayed, "journal", c.Journal)
		}
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
	s := &Server{cfg: c, log: log, conn: conn, done: make(chan struct{}), cancel: cancel,
		kick: make(chan struct{}, 1), stop: make(chan struct{}),
		rogueSeen: map[netip.Addr]time.Time{}, jr: jr,
		h: &Handler{Mode: c.Mode, ServerID: sid, Boot: c.Boot, Inv: inv, Leases: NewLeases(leases),
			LeaseTime: c.LeaseTime, OfferHold: c.OfferHold, Quarantine: c.Quarantine}}
	s.handlers.Go(func() { s.read(conn, packet{}) })
	if c.RogueConn != nil {
		s.handlers.Go(func() { s.read(c.RogueConn, packet{rogue: true}) })
	}
	if c.PXEConn != nil && c.Mode == Proxy {
		s.handlers.Go(func() { s.read(c.PXEConn, packet{pxe: true}) })
	}
	s.handlers.Go(func() { s.expire(ctx) })
	go s.refresh(ctx, feedSeq)
	go func() {
		s.handlers.Wait()
		close(s.stop)
	}()
	go s.commit(ctx)
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
// burst, and it is the server's only queue: a reader handles what it read before reading again.
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
		Answered: s.answered.Load(), Malformed: s.malformed.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load()}
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

// read handles what arrives on conn, each packet marked like kind, until conn is closed. Each
// listener's goroutine handles its own packets (under s.mu: one handler, however many
// listeners), so a packet is never handed from goroutine to goroutine before its reply.
func (s *Server) read(conn net.PacketConn, kind packet) {
	if uc, ok := conn.(*net.UDPConn); ok {
		s.readUDP(uc, kind)
		return
	}
	buf := make([]byte, 1500)
	var sb sendBuffers
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dhcp: read", "err", err)
			continue
		}
		// A copy of the packet's size (about 300 bytes): the request's fields point into it and
		// an ACK is encoded only after its commit.
		s.handleBatch([]packet{{data: append([]byte(nil), buf[:n]...), peer: peer, rogue: kind.rogue, pxe: kind.pxe}}, &sb)
	}
}

// readCoalesce is how long a reader waits, after handling a short batch (its replies sent), before
// it reads again, so that the next read finds several packets. Under load, a reader woken for
// every packet or two spends more on waking (a recvmmsg that finds nothing, epoll_wait, the Go
// scheduler's search for work) than on the packets: at 4,500 exchanges a second, waiting 1 ms cut
// the server's CPU per exchange by 15%. What it costs is at most this much latency for a
// packet that arrives while the reader waits; replies in hand are never held. A burst that fills
// half a read or more is read again at once.
const readCoalesce = time.Millisecond

// readUDP is read for a UDP socket: one recvmmsg returns every packet waiting (up to readBatch),
// so a burst costs one system call and one wake-up of this goroutine, not one per packet.
func (s *Server) readUDP(uc *net.UDPConn, kind packet) {
	pc := ipv4.NewPacketConn(uc)
	overflow := watchOverflow(uc)
	var dropped uint32 // the socket's drop count as last reported
	msgs := make([]ipv4.Message, readBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
		if overflow {
			msgs[i].OOB = make([]byte, unix.CmsgSpace(4))
		}
	}
	batch := make([]packet, 0, readBatch)
	var sb sendBuffers
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dhcp: read", "err", err)
			continue
		}
		// The packets are copied out of the read buffers into one block (the requests' fields
		// point into it, and ACKs are encoded only after their commit).
		size := 0
		for i := range msgs[:n] {
			size += msgs[i].N
		}
		block := make([]byte, 0, size)
		batch = batch[:0]
		for i := range msgs[:n] {
			m := &msgs[i]
			start := len(block)
			block = append(block, m.Buffers[0][:m.N]...)
			batch = append(batch, packet{data: block[start:len(block):len(block)], peer: m.Addr, rogue: kind.rogue, pxe: kind.pxe})
		}
		s.handleBatch(batch, &sb)
		clear(batch)
		if n < readBatch/2 {
			// A short batch: let the next packets gather (see readCoalesce). The thread sleeps, not
			// the goroutine: parking it would be the wake-up this avoids.
			_ = unix.Nanosleep(&unix.Timespec{Nsec: int64(readCoalesce)}, nil)
		}
		if overflow {
			if d, ok := overflowCount(msgs[n-1].OOB[:msgs[n-1].NN]); ok && d != dropped {
				s.dropped.Add(uint64(d - dropped))
				dropped = d
			}
		}
	}
}

// watchOverflow asks the kernel to report, with each packet read, how many it dropped on uc for
// want of buffer space (SO_RXQ_OVFL).
func watchOverflow(uc *net.UDPConn) bool {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// overflowCount reads the SO_RXQ_OVFL count from a packet's control messages. The kernel sends
// it only once the count is not zero.
func overflowCount(oob []byte) (uint32, bool) {
	if len(oob) == 0 {
		return 0, false
	}
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, cm := range cms {
		if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SO_RXQ_OVFL && len(cm.Data) >= 4 {
			return binary.NativeEndian.Uint32(cm.Data), true
		}
	}
	return 0, false
}

// expire marks leases past their time EXPIRED, once a second.
func (s *Server) expire(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.mu.Lock()
		ls, evs := s.h.Expire(now)
		s.handOver(nil, nil, ls, stamp(evs, now), nil, now)
		s.mu.Unlock()
	}
}

// inventoryTypes are the event object types whose changes alter what the handler decides from.
var inventoryTypes = []string{"network", "iprange", "nic", "ipallocation"}

// refresh reloads the inventory snapshot when the event feed shows a change to it. Every commit
// pokes the hub, the server's own lease batches included, so a poke only leads to one indexed
// look at the events since the last one seen, at most once per Debounce.
//
// last is the feed position the current inventory was loaded after.
func (s *Server) refresh(ctx context.Context, last int64) {
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	client := s.cfg.Store.Client
	hub := s.cfg.Store.Hub
	var poked <-chan struct{}
	if hub != nil {
		poked = hub.Wait()
	}
	for {
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
			// The next poke is waited for from before this read: a commit after it is not missed.
			poked = hub.Wait()
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
	reply *dhcpv4.DHCPv4
	dest  net.Addr
	conn  net.PacketConn
}

// sendBuffers are one goroutine's reusable buffers: the encoded replies of one send and their
// messages, and (for a reader) what handleBatch gathers from a batch.
type sendBuffers struct {
	durable, lazy       []Lease
	durableEvs, lazyEvs []Event
	acks, out           []outgoing

	data []byte
	ends []int // where each batched reply ends in data
	bufs [][]byte
	msgs []ipv4.Message
}

// lazyMax bounds the lazy writes held: past it they are committed at once.
const lazyMax = 4096

// handOver passes a batch's writes to the commit stage and returns the ACKs that may leave now.
// The durable writes (ls, evs) are journaled when there is a journal with room: they then need
// no transaction before their ACKs leave, and all of acks is returned. Otherwise they are handed
// as durable, acks wait for their commit, and nil is returned. Lazy writes go first: they happened
// before (or with) the durable ones. Called under s.mu, so that the journal and the pending
// writes hold changes in the order the lease table made them.
func (s *Server) handOver(lazy []Lease, lazyEvs []Event, ls []Lease, evs []Event, acks []outgoing, now time.Time) []outgoing {
	durable := len(ls)+len(evs) > 0
	s.pmu.Lock()
	journaled := durable && s.journalLocked(ls, evs)
	wake := s.pend.add(lazy, lazyEvs, nil, false, now)
	if journaled {
		wake = s.pend.add(ls, evs, nil, false, now) || wake
	} else {
		wake = s.pend.add(ls, evs, acks, durable, now) || wake
	}
	s.pmu.Unlock()
	if wake {
		s.wake()
	}
	if journaled {
		return acks
	}
	return nil
}

// journalLocked appends durable writes to the journal, under pmu: the commit stage rotates the
// journal's generation when it takes the pending writes, so a generation never holds a change
// that the transaction covering it lacks. It reports false when there is no journal, its backlog
// is at JournalBacklog, or the append failed.
func (s *Server) journalLocked(ls []Lease, evs []Event) bool {
	if s.jr == nil {
		return false
	}
	if full := len(s.pend.leases)+len(s.pend.evs) >= s.cfg.JournalBacklog; full != s.backlogFull {
		s.backlogFull = full
		if full {
			s.log.Warn("dhcp: the journal's backlog is full (the database is not keeping up): acknowledgements wait for transactions",
				"pending", len(s.pend.leases)+len(s.pend.evs))
		} else {
			s.log.Info("dhcp: the journal's backlog is below its bound again")
		}
	}
	if s.backlogFull {
		return false
	}
	if err := s.jr.append(ls, evs); err != nil {
		s.log.Error("dhcp: journal append failed: these acknowledgements wait for a transaction", "err", err)
		return false
	}
	return true
}

// add appends writes to p and reports whether the commit stage must be woken: durable writes, the
// first lazy ones (it then times their flush), or too many lazy ones held.
func (p *pending) add(ls []Lease, evs []Event, acks []outgoing, durable bool, now time.Time) bool {
	if len(ls)+len(evs)+len(acks) == 0 {
		return false
	}
	wake := durable || p.empty()
	if !durable && p.since.IsZero() {
		p.since = now
	}
	p.leases = append(p.leases, ls...)
	p.evs = append(p.evs, evs...)
	p.acks = append(p.acks, acks...)
	p.durable = p.durable || durable || len(p.leases)+len(p.evs) > lazyMax
	return wake || p.durable
}

func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// commit is the commit stage: it writes what work handed it in one transaction and then sends
// the replies that waited for it. While it commits, what arrives gathers in s.pend for the next
// transaction (group commit): the busier the network, the longer the transactions, without a
// fixed batch size or wait. Lazy writes alone are committed LazyFlush after the first of them.
// Once the readers have stopped (at shutdown) it commits what is left, with a context of its
// own (the ACKs among it are not sent: the socket is closed).
func (s *Server) commit(ctx context.Context) {
	defer close(s.done)
	if s.jr != nil {
		backgroundThread(s.log)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var sb sendBuffers
	var spare pending // the arrays of the previous transaction, reused for the next
	for {
		s.pmu.Lock()
		durable, since, empty := s.pend.durable, s.pend.since, s.pend.empty()
		s.pmu.Unlock()
		var wait time.Duration
		switch {
		case empty:
			wait = -1
		case durable:
			wait = 0
		default:
			wait = max(0, s.cfg.LazyFlush-time.Since(since))
		}
		if wait != 0 {
			if wait > 0 {
				timer.Reset(wait)
			}
			select {
			case <-s.stop:
				timer.Stop()
				s.finalCommit()
				return
			case <-s.kick:
				timer.Stop()
				continue
			case <-timer.C:
			}
		}
		if durable && s.cfg.Linger > 0 {
			// Let the packets already arriving join this transaction.
			timer.Reset(s.cfg.Linger)
			select {
			case <-s.stop:
				timer.Stop()
				s.finalCommit()
				return
			case <-timer.C:
			}
		}
		p, mark := s.take(pending{leases: spare.leases[:0], evs: spare.evs[:0], acks: spare.acks[:0]})
		if p.empty() {
			continue
		}
		// Not cancelled with ctx: the SQLite driver runs a statement whose context can be
		// cancelled on a goroutine of its own, which the caller then waits for (a goroutine, and
		// two thread hand-offs, per statement: 10% of the server's CPU, and the work escaped the
		// commit stage's low-priority thread). A transaction in progress at shutdown finishes
		// (it waits for the database's lock at most the store's busy timeout).
		if err := persist(context.WithoutCancel(ctx), s.cfg.Store, p.leases, p.evs, mark); err != nil {
			s.failed.Add(1)
			if s.jr != nil {
				// Journaled ACKs have left: the writes are kept (in memory and in the journal)
				// and tried again after a pause, or by finalCommit when stopping.
				if ctx.Err() == nil {
					s.log.Error("dhcp: lease batch not committed: it stays in the journal and is retried", "err", err,
						"leases", len(p.leases))
				}
				s.requeue(p)
				spare = pending{}
				select {
				case <-s.stop:
					s.finalCommit()
					return
				case <-time.After(time.Second):
				}
				continue
			}
			if ctx.Err() == nil {
				s.log.Error("dhcp: lease batch not committed: its acknowledgements are withheld", "err", err,
					"leases", len(p.leases), "acks", len(p.acks))
			}
		} else {
			s.send(p.acks, &sb)
			s.committed(mark)
		}
		clear(p.evs) // drop the references to the events' data
		clear(p.acks)
		spare = p
	}
}

// requeue puts a batch that failed to commit back in front of what arrived since.
func (s *Server) requeue(p pending) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	q := s.pend
	p.leases = append(p.leases, q.leases...)
	p.evs = append(p.evs, q.evs...)
	p.acks = append(p.acks, q.acks...)
	p.durable = p.durable || q.durable
	if p.since.IsZero() || (!q.since.IsZero() && q.since.Before(p.since)) {
		p.since = q.since
	}
	if p.since.IsZero() {
		p.since = time.Now()
	}
	s.pend = p
}

// commitNice is the scheduling priority of the commit stage's thread when a journal lets it lag:
// a weight of about a third of a default thread's, so it still gets its share of a busy core.
const commitNice = 5

// backgroundThread gives the calling goroutine a thread of its own at commitNice. With a journal
// the commit stage is background work (the ACKs have left), and its transactions are long (tens
// of milliseconds every LazyFlush). At the default priority a relay or client on the same machine,
// or the reader, can wait behind one while its socket buffer overflows. The thread ends with the
// goroutine (it stays locked), so the priority never reaches another goroutine. (In the benchmark
// the difference was within the noise of single runs; it is kept for what it protects.)
func backgroundThread(log *slog.Logger) {
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), commitNice); err != nil {
		log.Debug("dhcp: lower the commit stage's priority", "err", err)
	}
}

// finalCommit commits what is still pending when the server stops (its context is done).
func (s *Server) finalCommit() {
	p, mark := s.take(pending{})
	if s.jr != nil {
		defer s.jr.close()
	}
	if len(p.leases)+len(p.evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := persist(ctx, s.cfg.Store, p.leases, p.evs, mark); err != nil {
		s.log.Warn("dhcp: persist leases and events at shutdown (a journal keeps them for the next start)", "err", err)
		return
	}
	s.committed(mark)
}

// take swaps the pending writes for next and returns them, with the journal generation they
// reach (0 without a journal): the journal starts a new generation for what comes after.
func (s *Server) take(next pending) (pending, uint64) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.pend
	s.pend = next
	var mark uint64
	if s.jr != nil {
		mark = s.jr.rotate()
	}
	return p, mark
}

// committed frees the journal's generations up to mark, once a transaction recorded it.
func (s *Server) committed(mark uint64) {
	if s.jr == nil {
		return
	}
	s.pmu.Lock()
	s.jr.drop(mark)
	s.pmu.Unlock()
}

// stamp dates the events that carry no time of their own.
func stamp(es []Event, now time.Time) []Event {
	for i := range es {
		if es[i].At.IsZero() {
			es[i].At = now
		}
	}
	return es
}

func (s *Server) handleBatch(batch []packet, sb *sendBuffers) {
	var (
		durable, lazy       = sb.durable[:0], sb.lazy[:0]
		durableEvs, lazyEvs = sb.durableEvs[:0], sb.lazyEvs[:0]
		now                 = time.Now()
		acks, out           = sb.acks[:0], sb.out[:0]
	)
	s.mu.Lock()
	for _, p := range batch {
		s.received.Add(1)
		req, err := parse(p.data)
		if err != nil || req.OpCode == 0 {
			s.malformed.Add(1)
			continue
		}
		if p.rogue || req.OpCode == dhcpv4.OpcodeBootReply {
			if ev, ok := s.rogue(req, now); ok {
				lazyEvs = append(lazyEvs, stamp([]Event{ev}, now)...)
			}
			continue
		}
		r := s.h.Handle(req, now)
		if r.Commit {
			durable = append(durable, r.Changed...)
			durableEvs = append(durableEvs, stamp(r.Events, now)...)
		} else {
			lazy = append(lazy, r.Changed...)
			lazyEvs = append(lazyEvs, stamp(r.Events, now)...)
		}
		if r.Reply == nil {
			continue
		}
		if s.cfg.Mode == Shadow {
			lazyEvs = append(lazyEvs, Event{Kind: "dhcp.shadow", MAC: req.ClientHWAddr.String(), Addr: addrOf(r.Reply.YourIPAddr), At: now,
				Data: map[string]any{"mac": req.ClientHWAddr.String(), "reply": r.Reply.MessageType().String(),
					"address": r.Reply.YourIPAddr.String(), "bootfile": r.Reply.BootFileName, "to": r.Dest.String()}})
			continue
		}
		o := outgoing{reply: r.Reply, dest: r.Dest, conn: s.conn}
		if p.pxe {
			// A boot-server REQUEST on 4011 is answered to where it came from, from 4011.
			o.dest, o.conn = p.peer, s.cfg.PXEConn
		}
		if r.Commit {
			acks = append(acks, o)
		} else {
			out = append(out, o)
		}
	}
	out = append(out, s.handOver(lazy, lazyEvs, durable, durableEvs, acks, now)...)
	s.mu.Unlock()
	s.send(out, sb)
	// What was handed over was copied (the journal and the pending writes take copies): the
	// arrays serve the next batch, without the references their elements held.
	clear(durable)
	clear(lazy)
	clear(durableEvs)
	clear(lazyEvs)
	clear(acks)
	clear(out)
	sb.durable, sb.lazy, sb.durableEvs, sb.lazyEvs, sb.acks, sb.out = durable, lazy, durableEvs, lazyEvs, acks, out
}

// sendBurst and sendGap pace a long run of replies (the ACKs of a large transaction): at most
// sendBurst back to back, then a pause. A relay, or a client's socket, takes a burst into a
// receive buffer of some 200 KiB by default (about 250 DHCP packets once the kernel's overhead is
// counted); a run of 500 replies sent in one go overflows it before the receiver is scheduled,
// and what overflows is lost after the server has done all the work (measured: perfdhcp lost
// 0.5% of its ACKs in its own socket that way at 4,000 exchanges/s). The pause is short next to
// the transaction the replies already waited for.
const (
	sendBurst = 16
	sendGap   = 100 * time.Microsecond
)

// send writes replies: on a UDP socket with sendmmsg, as many per system call as there are,
// encoded into sb's reused buffers.
func (s *Server) send(out []outgoing, sb *sendBuffers) {
	if len(out) == 0 {
		return
	}
	sb.data, sb.ends, sb.bufs, sb.msgs = sb.data[:0], sb.ends[:0], sb.bufs[:0], sb.msgs[:0]
	var pc *ipv4.PacketConn
	for _, o := range out {
		start := len(sb.data)
		sb.data = appendEncoded(sb.data, o.reply)
		if uc, ok := o.conn.(*net.UDPConn); ok && o.conn == s.conn {
			if pc == nil {
				pc = s.batchConn(uc)
			}
			sb.ends = append(sb.ends, len(sb.data))
			sb.msgs = append(sb.msgs, ipv4.Message{Addr: o.dest})
			continue
		}
		_, err := o.conn.WriteTo(sb.data[start:], o.dest)
		sb.data = sb.data[:start] // sent (or not): only batched replies keep their bytes
		if err != nil {
			s.log.Debug("dhcp: send", "to", o.dest, "err", err)
			continue
		}
		s.answered.Add(1)
	}
	// The messages take their bytes only now that sb.data has stopped moving.
	start := 0
	for i, end := range sb.ends {
		sb.bufs = append(sb.bufs, sb.data[start:end])
		start = end
		sb.msgs[i].Buffers = sb.bufs[i : i+1 : i+1]
	}
	msgs := sb.msgs
	for len(msgs) > 0 {
		chunk := msgs[:min(len(msgs), sendBurst)]
		n, err := pc.WriteBatch(chunk, 0)
		if n > 0 {
			s.answered.Add(uint64(n))
			msgs = msgs[n:]
			if len(msgs) > 0 && n == len(chunk) {
				// The thread sleeps, not only the goroutine: the receiver may need this CPU.
				_ = unix.Nanosleep(&unix.Timespec{Nsec: int64(sendGap)}, nil)
			}
			continue
		}
		// A message that cannot be sent (no route, …) must not hold back the others.
		s.log.Debug("dhcp: send", "to", msgs[0].Addr, "err", err)
		msgs = msgs[1:]
	}
	clear(sb.msgs) // drop the addresses
}

func (s *Server) batchConn(uc *net.UDPConn) *ipv4.PacketConn {
	if s.out == nil {
		s.out = ipv4.NewPacketConn(uc)
	}
	return s.out
}

// rogue turns an OFFER from another server into a dhcp.rogue event, once per server per hour.
func (s *Server) rogue(req *dhcpv4.DHCPv4, now time.Time) (Event, bool) {
	if msgType(req) != dhcpv4.MessageTypeOffer {
		return Event{}, false
	}
	sid := optAddr(req, dhcpv4.OptionServerIdentifier)
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

// persist writes leases and events in one transaction and, when mark is not zero, records that
// the journal's segments up to mark are applied.
func persist(ctx context.Context, st *store.Store, ls []Lease, evs []Event, mark uint64) error {
	ctx = events.WithActor(ctx, "dhcp")
	return st.Events.Tx(ctx, func(ctx context.Context, tx *entTx) error {
		if err := saveLeases(ctx, tx, st.Dialect, ls); err != nil {
			return err
		}
		if mark > 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO dhcp_journal (id, applied) VALUES (1, ?) `+
				`ON CONFLICT (id) DO UPDATE SET applied = excluded.applied`, int64(mark)); err != nil {
				return fmt.Errorf("dhcp: journal mark: %w", err)
			}
		}
		now := time.Now()
		js := make([]byte, 0, 112*len(evs)) // the lease events' changes, one array for the batch
		var ok bool
		var err error
		for i := range evs {
			e := &evs[i]
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
			start := len(js)
			if js, ok = e.leaseJSON(js); ok {
				err = events.EmitJSONAt(ctx, at, e.Kind, obj, id, mid, js[start:len(js):len(js)])
			} else {
				err = events.EmitAt(ctx, at, e.Kind, obj, id, mid, e.Data)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
