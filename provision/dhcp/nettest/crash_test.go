package nettest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/lease"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/internal/testenv"
)

// prybarBinary builds ./cmd/prybar into dir (PRYBAR_TEST_BINARY names a prebuilt one instead).
func prybarBinary(t *testing.T, dir string) string {
	t.Helper()
	if p := os.Getenv("PRYBAR_TEST_BINARY"); p != "" {
		return p
	}
	bin := filepath.Join(dir, "prybar")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/prybar/prybar/cmd/prybar").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/prybar: %v\n%s", err, out)
	}
	return bin
}

// pairNetns creates two namespaces joined by a veth pair: the server end "vs" (10.66.0.1/16) in
// the first, the client end "vc" (10.66.0.2/16) in the second. perfdhcp acts as a relay, so the
// two ends must be in different namespaces (a namespace drops packets from its own addresses).
func pairNetns(t *testing.T) (srvNS, cliNS string) {
	t.Helper()
	_, errIP := exec.LookPath("ip")
	need(t, errIP == nil && os.Geteuid() == 0, "needs root and iproute2 (ip) to create network namespaces")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	srvNS, cliNS = "dhcp-crash-s-"+id, "dhcp-crash-c-"+id
	for _, args := range [][]string{
		{"netns", "add", srvNS}, {"netns", "add", cliNS},
		{"-n", srvNS, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", cliNS},
		{"-n", srvNS, "addr", "add", "10.66.0.1/16", "dev", "vs"}, {"-n", cliNS, "addr", "add", "10.66.0.2/16", "dev", "vc"},
		{"-n", srvNS, "link", "set", "lo", "up"}, {"-n", cliNS, "link", "set", "lo", "up"},
		{"-n", srvNS, "link", "set", "vs", "up"}, {"-n", cliNS, "link", "set", "vc", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "netns" {
			name := args[2]
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		}
	}
	return srvNS, cliNS
}

// ackCapture records every DHCPACK that reaches an interface, from a packet socket (AF_PACKET)
// in the interface's namespace: what the server put on the wire, whether or not perfdhcp
// counted it. The kernel's drop counter for the socket tells whether the record is complete.
type ackCapture struct {
	f    *os.File
	fd   int
	mu   sync.Mutex
	acks []ack
	done chan struct{}
}

type ack struct {
	mac  string
	addr netip.Addr
	at   time.Time
}

func captureACKs(t *testing.T, nsName, dev string) *ackCapture {
	t.Helper()
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread stays in the namespace and Go discards it
		ns, err := os.Open("/var/run/netns/" + nsName)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			ch <- res{err: err}
			return
		}
		proto := int(htons(unix.ETH_P_IP))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			ch <- res{err: err}
			return
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			ch <- res{err: err}
			return
		}
		ch <- res{fd: fd}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("packet socket in %s: %v", nsName, r.err)
	}
	c := &ackCapture{f: os.NewFile(uintptr(r.fd), "capture"), fd: r.fd, done: make(chan struct{})}
	go c.read()
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *ackCapture) read() {
	defer close(c.done)
	buf := make([]byte, 2048)
	for {
		n, err := c.f.Read(buf)
		if err != nil {
			return
		}
		p := buf[:n]
		if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 || binary.BigEndian.Uint16(p[ihl:]) != 67 || binary.BigEndian.Uint16(p[ihl+2:]) != 67 {
			continue // a reply to a relay goes from port 67 to port 67
		}
		m, err := dhcpv4.FromBytes(p[ihl+8:])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.MessageType() != dhcpv4.MessageTypeAck {
			continue
		}
		a, _ := netip.AddrFromSlice(m.YourIPAddr.To4())
		c.mu.Lock()
		c.acks = append(c.acks, ack{mac: m.ClientHWAddr.String(), addr: a, at: time.Now()})
		c.mu.Unlock()
	}
}

func (c *ackCapture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks)
}

// stop closes the socket and returns the ACKs seen and how many packets the kernel dropped
// because the socket's buffer was full (0: the record is complete).
func (c *ackCapture) stop(t *testing.T) ([]ack, uint32) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // let the reader drain what is queued
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		t.Fatalf("PACKET_STATISTICS: %v", err)
	}
	c.f.Close()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acks, st.Drops
}

// serveProc is `prybar serve --dhcp authoritative` running in a namespace.
type serveProc struct {
	cmd  *exec.Cmd
	exit chan error
}

func startServe(t *testing.T, nsName, bin, db, key, logFile string, extra ...string) *serveProc {
	t.Helper()
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	args := append([]string{"netns", "exec", nsName, bin, "serve", "--db", db, "--secret-key-file", key,
		"--listen", "127.0.0.1:0", "--log-level", "warn", "--dhcp", "authoritative", "--dhcp-iface", "vs"}, extra...)
	cmd := exec.Command("ip", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil { // ip netns exec execs prybar: the pid is prybar's
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, exit: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			// serve starts DHCP before HTTP: once it announces HTTP, DHCP is answering.
			if !once && strings.Contains(sc.Text(), "Prybar is serving at") {
				once = true
				close(ready)
			}
		}
		p.exit <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case <-ready:
	case err := <-p.exit:
		log, _ := os.ReadFile(logFile)
		t.Fatalf("prybar serve exited before serving: %v\n%s", err, log)
	case <-time.After(30 * time.Second):
		t.Fatal("prybar serve not serving after 30 s")
	}
	return p
}

func (p *serveProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exit
}

// perfdhcpReceivedACKs reads the REQUEST-ACK section's "received packets" from perfdhcp's report.
func perfdhcpReceivedACKs(out string) (int, bool) {
	_, after, ok := strings.Cut(out, "Statistics for: REQUEST-ACK")
	if !ok {
		return 0, false
	}
	m := regexp.MustCompile(`received packets: (\d+)`).FindStringSubmatch(after)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// TestCrashKeepsAcknowledgedLeases SIGKILLs `prybar serve --dhcp authoritative` twice while
// perfdhcp (as a relay) runs full DORA exchanges for 10,000 clients, restarting it each time
// while perfdhcp carries on. A packet socket on perfdhcp's interface records every ACK the server
// put on the wire. Afterwards, from the database: every ACKed (MAC, address) is stored BOUND to
// that MAC, and no address was ever ACKed to two MACs (perfdhcp never releases, and its leases
// last an hour). An ACK sent before its lease was durable would show up as an address the
// restarted server (whose pool search starts again at the pool's first address) hands to
// another client, and as a stored lease with another MAC or none.
//
// It runs with the lease journal (serve's default on a SQLite file: ACKs leave once journaled,
// the restart replays what was not committed) and without it (each ACK waits for its commit).
func TestCrashKeepsAcknowledgedLeases(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the prybar binary")
	}
	t.Run("journal", func(t *testing.T) { testCrashKeepsAcknowledgedLeases(t, true) })
	t.Run("no-journal", func(t *testing.T) { testCrashKeepsAcknowledgedLeases(t, false, "--dhcp-journal", "off") })
}

func testCrashKeepsAcknowledgedLeases(t *testing.T, journal bool, extra ...string) {
	perfdhcp := testenv.LookPath(t, "perfdhcp", "kea-admin")
	srvNS, cliNS := pairNetns(t)
	dir := t.TempDir()
	bin := prybarBinary(t, dir)
	db, key, logFile := filepath.Join(dir, "prybar.db"), filepath.Join(dir, "prybar.key"), filepath.Join(dir, "serve.log")
	ctx := context.Background()

	// The network perfdhcp's relay address (giaddr 10.66.0.2) falls in, with a pool larger than
	// the clients: an address is reused only if the server forgot a lease.
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var netID int
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		n, err := tx.Network.Create().SetName("crash").SetCidr("10.66.0.0/16").SetRouter("10.66.0.1").SetLeaseSeconds(3600).Save(ctx)
		if err != nil {
			return err
		}
		netID = n.ID
		return tx.IPRange.Create().SetNetworkID(n.ID).SetFirst("10.66.1.0").SetLast("10.66.255.254").SetPurpose(iprange.PurposeDHCP).Exec(ctx)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	capture := captureACKs(t, cliNS, "vc")
	srv := startServe(t, srvNS, bin, db, key, logFile, extra...)

	// 10,000 exchanges at 500/s: about 20 s, bounded at 45 s. perfdhcp draws each exchange's
	// MAC from 10,000 (so some clients come back, as they do after a restart).
	const clients, rate = 10000, 500
	pctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	var perfOut bytes.Buffer
	perf := exec.CommandContext(pctx, "ip", "netns", "exec", cliNS, perfdhcp, "-4", "-l", "vc", "-r", fmt.Sprint(rate),
		"-R", fmt.Sprint(clients), "-n", fmt.Sprint(clients), "-p", "40", "-d", "2", "10.66.0.1")
	perf.Stdout, perf.Stderr = &perfOut, &perfOut
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	perfDone := make(chan error, 1)
	go func() { perfDone <- perf.Wait() }()

	waitACKs := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for capture.count() < n {
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logFile)
				t.Fatalf("only %d ACKs seen, waiting for %d\nperfdhcp:\n%s\nserve log:\n%s", capture.count(), n, perfOut.String(), log)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var killedAt []int
	for _, at := range []int{1500, 4000} {
		waitACKs(at)
		srv.kill(t) // mid-stream: batches are being handled and committed
		killedAt = append(killedAt, capture.count())
		srv = startServe(t, srvNS, bin, db, key, logFile, extra...)
	}
	waitACKs(killedAt[len(killedAt)-1] + 1000) // the restarted server answers
	select {
	case err := <-perfDone:
		if err != nil && pctx.Err() != nil {
			t.Fatalf("perfdhcp did not finish in time: %v", err)
		}
	case <-time.After(50 * time.Second):
		t.Fatal("perfdhcp did not finish")
	}
	if err := srv.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-srv.exit
	acks, drops := capture.stop(t)
	if drops != 0 {
		t.Fatalf("the capture socket dropped %d packets: the ACK record is incomplete", drops)
	}
	perfACKs, ok := perfdhcpReceivedACKs(perfOut.String())
	if !ok {
		t.Fatalf("no REQUEST-ACK statistics in perfdhcp's output:\n%s", perfOut.String())
	}
	if len(acks) < perfACKs {
		t.Fatalf("captured %d ACKs, perfdhcp counted %d: the capture missed some", len(acks), perfACKs)
	}

	// No address was acknowledged to two MACs, across both crashes.
	owner := map[netip.Addr]ack{}
	macs := map[string]bool{}
	for _, a := range acks {
		macs[a.mac] = true
		if o, ok := owner[a.addr]; ok && o.mac != a.mac {
			t.Errorf("address %s acknowledged to %s (at %s) and then to %s (at %s)", a.addr, o.mac,
				o.at.Format("15:04:05.000"), a.mac, a.at.Format("15:04:05.000"))
			continue
		}
		owner[a.addr] = a
	}

	// Every acknowledged lease is in the database, BOUND, with its MAC; no address is bound twice.
	st, err = store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.Client.Lease.Query().Where(lease.NetworkID(netID)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[netip.Addr]*ent.Lease{}
	boundTo := map[netip.Addr]int{}
	for _, r := range rows {
		a := netip.MustParseAddr(r.Address)
		stored[a] = r
		if r.State == lease.StateBOUND {
			boundTo[a]++
		}
	}
	for a, n := range boundTo {
		if n > 1 {
			t.Errorf("address %s is bound in %d rows", a, n)
		}
	}
	lost := 0
	for a, k := range owner {
		r := stored[a]
		if r == nil || r.MAC != k.mac || r.State != lease.StateBOUND {
			if lost++; lost <= 10 {
				t.Errorf("ACK of %s to %s (at %s) not kept: stored %+v", a, k.mac, k.at.Format("15:04:05.000"), r)
			}
		}
	}
	if lost > 10 {
		t.Errorf("... %d acknowledged leases lost in all", lost)
	}
	// With the journal, ACKs leave before their commit: a kill mid-stream leaves some only in the
	// journal, and the restart must have replayed them (else this run proved nothing about it).
	serveLog, _ := os.ReadFile(logFile)
	replays := strings.Count(string(serveLog), "journal replayed")
	if journal && replays == 0 {
		t.Errorf("no restart replayed the journal: the kills did not land between an ACK and its commit\n%s", serveLog)
	}
	if !journal && replays > 0 {
		t.Errorf("journal replayed with --dhcp-journal off")
	}
	t.Logf("%d journal replays", replays)
	t.Logf("%d ACKs on the wire (perfdhcp counted %d) for %d addresses and %d MACs; killed after %v ACKs; %d leases stored",
		len(acks), perfACKs, len(owner), len(macs), killedAt, len(rows))
}
