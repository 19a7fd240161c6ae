// The DHCP server against real clients (busybox udhcpc) in network
// namespaces the tests create. It is apart from provision/dhcp so that the fuzz build of that
// package stays small.
package nettest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/lease"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/dhcp"
)

// need fails under CI (where every peer must be installed) and skips with a reason elsewhere.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing under CI: %s", why)
	}
	t.Skip(why)
}

// netns is a network namespace with a veth pair: the server end "vs" (10.77.0.1/24) and the client
// end "vc". Both ends live in the namespace, so nothing touches the host's network.
type netns struct{ name string }

func newNetns(t *testing.T) *netns {
	t.Helper()
	_, errIP := exec.LookPath("ip")
	need(t, errIP == nil && os.Geteuid() == 0, "needs root and iproute2 (ip) to create a network namespace")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ns := &netns{name: "prybar-dhcp-" + hex.EncodeToString(b)}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns.name).Run() })
	run("-n", ns.name, "link", "set", "lo", "up")
	run("-n", ns.name, "link", "add", "vs", "type", "veth", "peer", "name", "vc")
	run("-n", ns.name, "addr", "add", "10.77.0.1/24", "dev", "vs")
	run("-n", ns.name, "link", "set", "vs", "up")
	run("-n", ns.name, "link", "set", "vc", "up")
	return ns
}

// listen opens a UDP socket on port inside the namespace: the socket keeps the namespace it was
// created in. The thread that entered the namespace is never unlocked, so Go discards it.
func (ns *netns) listen(t *testing.T, dev string, port int) net.PacketConn {
	t.Helper()
	return listenIn(t, ns.name, dev, port)
}

func listenIn(t *testing.T, nsName, dev string, port int) net.PacketConn {
	t.Helper()
	type res struct {
		c   net.PacketConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + nsName)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		c, err := server4.NewIPv4UDPConn(dev, &net.UDPAddr{Port: port})
		ch <- res{c: c, err: err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s: %v", nsName, r.err)
	}
	return r.c
}

// udhcpc runs busybox udhcpc on vc with the given MAC and returns the address it obtained ("" if none).
func (ns *netns) udhcpc(t *testing.T, mac string, tries int) string {
	t.Helper()
	if out, err := exec.Command("ip", "-n", ns.name, "link", "set", "vc", "address", mac).CombinedOutput(); err != nil {
		t.Fatalf("set mac: %v %s", err, out)
	}
	script := filepath.Join(t.TempDir(), "script.sh")
	// udhcpc calls the script with the lease in $ip; print it instead of configuring the interface.
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE $ip\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", ns.name, "busybox", "udhcpc", "-i", "vc", "-n", "-q", "-f",
		"-t", fmt.Sprint(tries), "-T", "1", "-A", "1", "-s", script).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if ip, ok := strings.CutPrefix(strings.TrimSpace(line), "LEASE "); ok {
			return ip
		}
	}
	t.Logf("udhcpc output:\n%s", out)
	return ""
}

func haveBusybox(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("busybox")
	need(t, err == nil, "needs busybox (Debian busybox-static) for udhcpc")
}

const knownMAC = "02:aa:00:00:00:01"

// seed creates network 10.77.0.0/24 with a discovery pool .100-.120 and a machine whose NIC has
// the reservation 10.77.0.10.
func seed(t *testing.T, st *store.Store) (machineID int) {
	t.Helper()
	ctx := context.Background()
	err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		n := tx.Network.Create().SetName("boot").SetCidr("10.77.0.0/24").SetRouter("10.77.0.1").
			SetDNSServers([]string{"10.77.0.53"}).SetDomain("lab.test").SetLeaseSeconds(600).SaveX(ctx)
		tx.IPRange.Create().SetNetworkID(n.ID).SetFirst("10.77.0.100").SetLast("10.77.0.120").SetPurpose(iprange.PurposeDHCP).SaveX(ctx)
		m := tx.Machine.Create().SetName("n1.lab.test").SaveX(ctx)
		tx.NIC.Create().SetMachineID(m.ID).SetMAC(knownMAC).SaveX(ctx)
		tx.IPAllocation.Create().SetNetworkID(n.ID).SetMachineID(m.ID).SetAddress("10.77.0.10").SaveX(ctx)
		machineID = m.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return machineID
}

func start(t *testing.T, ns *netns, st *store.Store, mode dhcp.Mode) *dhcp.Server {
	t.Helper()
	srv, err := dhcp.Config{Mode: mode, Interface: "vs", ServerIP: netip.MustParseAddr("10.77.0.1"), Store: st,
		Conn: ns.listen(t, "vs", 67), Log: apitest.Quiet()}.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func TestUdhcpcGetsReservationAndDiscoveryAddress(t *testing.T) {
	haveBusybox(t)
	ns := newNetns(t)
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	machineID := seed(t, st)
	srv := start(t, ns, st, dhcp.Authoritative)
	ctx := context.Background()

	if ip := ns.udhcpc(t, knownMAC, 5); ip != "10.77.0.10" {
		t.Fatalf("known machine got %q, want its reservation 10.77.0.10", ip)
	}
	l, err := st.Client.Lease.Query().Where(lease.MAC(knownMAC)).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.State != lease.StateBOUND || l.Address != "10.77.0.10" || l.MachineID == nil || *l.MachineID != machineID {
		t.Errorf("stored lease %+v", l)
	}
	bound, err := st.Client.Event.Query().Where(event.Kind("lease.bound"), event.MachineID(machineID)).Count(ctx)
	if err != nil || bound == 0 {
		t.Errorf("no lease.bound event for the machine (%v)", err)
	}

	unknown := "02:bb:00:00:00:07"
	ip := ns.udhcpc(t, unknown, 5)
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Compare(netip.MustParseAddr("10.77.0.100")) < 0 || a.Compare(netip.MustParseAddr("10.77.0.120")) > 0 {
		t.Fatalf("unknown client got %q, want an address of the discovery pool", ip)
	}
	if n, _ := st.Client.Lease.Query().Where(lease.MAC(unknown), lease.Address(ip), lease.StateEQ(lease.StateBOUND)).Count(ctx); n != 1 {
		t.Errorf("unknown client's lease not stored as BOUND")
	}
	if s := srv.Status(); s.Answered < 4 || s.Malformed != 0 {
		t.Errorf("status %+v", s)
	}

	// Leases survive a restart: the restarted server gives the unknown client the same address.
	_ = srv.Close()
	start(t, ns, st, dhcp.Authoritative)
	if again := ns.udhcpc(t, unknown, 5); again != ip {
		t.Errorf("after restart the client got %q, want its lease %s", again, ip)
	}
}

func TestShadowModeSendsNothingButRecords(t *testing.T) {
	haveBusybox(t)
	ns := newNetns(t)
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	seed(t, st)
	srv := start(t, ns, st, dhcp.Shadow)
	if ip := ns.udhcpc(t, knownMAC, 3); ip != "" {
		t.Fatalf("shadow mode answered: client got %s", ip)
	}
	evs, err := st.Client.Event.Query().Where(event.Kind("dhcp.shadow")).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Fatal("no dhcp.shadow event recorded")
	}
	if got := evs[0].Changes["address"]; got != "10.77.0.10" || evs[0].Changes["reply"] != "OFFER" {
		t.Errorf("shadow event %v, want an OFFER of 10.77.0.10", evs[0].Changes)
	}
	if s := srv.Status(); s.Answered != 0 || s.Received == 0 {
		t.Errorf("status %+v", s)
	}
}

func TestMalformedPacketsDroppedAndCounted(t *testing.T) {
	ns := newNetns(t)
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	seed(t, st)
	srv := start(t, ns, st, dhcp.Authoritative)
	// Broadcast garbage from the client end, as a broken client on the wire would. The client end
	// moves to a namespace of its own with an address: within one namespace the server end would
	// drop packets from a local source address as martians.
	peer := ns.peer(t)
	c := listenIn(t, peer, "vc", 0)
	defer c.Close()
	for i := 0; i < 3; i++ {
		if _, err := c.WriteTo([]byte("\x01\x01\x06garbage"), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Status().Malformed < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := srv.Status(); s.Malformed < 3 || s.Answered != 0 {
		t.Fatalf("status %+v: want 3 malformed, none answered", s)
	}
}

// peer moves the client end "vc" into a namespace of its own with address 10.77.0.2, so that
// packets between the two ends are not dropped as martians (a namespace's own source address).
func (ns *netns) peer(t *testing.T) string {
	t.Helper()
	peer := ns.name + "-c"
	for _, args := range [][]string{{"netns", "add", peer}, {"-n", ns.name, "link", "set", "vc", "netns", peer},
		{"-n", peer, "addr", "add", "10.77.0.2/24", "dev", "vc"}, {"-n", peer, "link", "set", "vc", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", peer).Run() })
		}
	}
	return peer
}

// TestRogueServerOneEventPerServer runs a second DHCP server on the wire: a responder in the
// peer namespace that broadcasts OFFERs as two servers would (three from 10.77.0.2, two from
// 10.77.0.3). Prybar's port-68 listener sees them all and records one dhcp.rogue event per server
// (the once-an-hour window is TestRogueOncePerServerPerHour's, in the package).
func TestRogueServerOneEventPerServer(t *testing.T) {
	ns := newNetns(t)
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	seed(t, st)
	srv, err := dhcp.Config{Mode: dhcp.Authoritative, Interface: "vs", ServerIP: netip.MustParseAddr("10.77.0.1"), Store: st,
		Conn: ns.listen(t, "vs", 67), RogueConn: ns.listen(t, "vs", 68), Log: apitest.Quiet()}.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	peer := ns.peer(t)
	rogue := listenIn(t, peer, "vc", 67)
	defer rogue.Close()
	offer := func(server, yiaddr string, mac byte) []byte {
		m, err := dhcpv4.New(dhcpv4.WithReply(&dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeBootRequest, HWType: 1,
			ClientHWAddr: net.HardwareAddr{2, 0xcc, 0, 0, 0, mac}}),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(net.ParseIP(yiaddr)),
			dhcpv4.WithServerIP(net.ParseIP(server)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(server))))
		if err != nil {
			t.Fatal(err)
		}
		return m.ToBytes()
	}
	sent := 0
	for i, o := range [][]byte{offer("10.77.0.2", "10.77.0.150", 1), offer("10.77.0.3", "10.77.0.200", 2),
		offer("10.77.0.2", "10.77.0.151", 3), offer("10.77.0.2", "10.77.0.152", 4), offer("10.77.0.3", "10.77.0.201", 5)} {
		if _, err := rogue.WriteTo(o, &net.UDPAddr{IP: net.IPv4bcast, Port: 68}); err != nil {
			t.Fatalf("offer %d: %v", i, err)
		}
		sent++
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Status().Received < uint64(sent) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := srv.Status().Received; got < uint64(sent) {
		t.Fatalf("the server saw %d of %d offers", got, sent)
	}
	var evs []*ent.Event
	for time.Now().Before(deadline) { // the batch commits just after the counter moves
		if evs, err = st.Client.Event.Query().Where(event.Kind("dhcp.rogue")).Order(ent.Asc(event.FieldSeq)).All(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(evs) >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	evs, err = st.Client.Event.Query().Where(event.Kind("dhcp.rogue")).Order(ent.Asc(event.FieldSeq)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d dhcp.rogue events, want one per server (2): %v", len(evs), evs)
	}
	for i, want := range [][2]string{{"10.77.0.2", "10.77.0.150"}, {"10.77.0.3", "10.77.0.200"}} {
		if evs[i].Changes["server"] != want[0] || evs[i].Changes["offered"] != want[1] {
			t.Errorf("event %d: %v, want server %s offering %s", i, evs[i].Changes, want[0], want[1])
		}
	}
	if s := srv.Status(); s.Answered != 0 {
		t.Errorf("answered another server's offers: %+v", s)
	}
}

// TestProxyAnswersPXEBootServerRequestOn4011 is the second half of a PXE boot beside another
// DHCP server: the ROM, holding an address from that server, asks the proxy for its boot file on
// port 4011 and gets the ACK back at its own address and port.
func TestProxyAnswersPXEBootServerRequestOn4011(t *testing.T) {
	ns := newNetns(t)
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	seed(t, st)
	srv, err := dhcp.Config{Mode: dhcp.Proxy, Interface: "vs", ServerIP: netip.MustParseAddr("10.77.0.1"), Store: st,
		Conn: ns.listen(t, "vs", 67), PXEConn: ns.listen(t, "vs", dhcp.PXEPort), Log: apitest.Quiet()}.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	peer := ns.peer(t)
	c := listenIn(t, peer, "vc", 68)
	defer c.Close()
	hw := net.HardwareAddr{2, 0xdd, 0, 0, 0, 1}
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("10.77.0.2")), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	if err != nil {
		t.Fatal(err)
	}
	var ack *dhcpv4.DHCPv4
	buf := make([]byte, 1500)
	for try := 0; try < 5 && ack == nil; try++ { // UDP: the first packet may meet an unresolved neighbour
		if _, err := c.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP("10.77.0.1"), Port: dhcp.PXEPort}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && m.TransactionID == req.TransactionID && m.OpCode == dhcpv4.OpcodeBootReply {
				if ua, ok := from.(*net.UDPAddr); !ok || ua.Port != dhcp.PXEPort {
					t.Errorf("answer from %v, want port %d", from, dhcp.PXEPort)
				}
				ack = m
				break
			}
		}
	}
	if ack == nil {
		t.Fatal("no answer to the boot-server REQUEST on port 4011")
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "undionly.kpxe" || !ack.YourIPAddr.IsUnspecified() ||
		ack.ClassIdentifier() != "PXEClient" {
		t.Errorf("answer %s, want an ACK with undionly.kpxe, no address, vendor class PXEClient", ack.Summary())
	}
	if n, _ := st.Client.Lease.Query().Count(context.Background()); n != 0 {
		t.Errorf("proxy mode stored %d leases", n)
	}
}
