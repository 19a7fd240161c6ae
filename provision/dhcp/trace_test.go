package dhcp_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/lease"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/provision/agentapi"
	"github.com/prybar/prybar/provision/dhcp"
	"github.com/prybar/prybar/provision/ipxe"
)

// A BIOS boot of a known machine through the real server, the real boot HTTP handler and the
// timeline: the PXE ROM's exchange starts a trace, iPXE's keeps it and is handed a script URL with
// it, the script carries it onto the kernel command line, the stored lease holds it, and the
// timeline puts the four DHCP steps and the script fetch into one boot with that trace. On both
// databases: the lease upsert and the event appends are plain SQL.
func TestTraceTiesDHCPToScript(t *testing.T) {
	apitest.ForEachDB(t, testTraceTiesDHCPToScript)
}

func testTraceTiesDHCPToScript(t *testing.T, db apitest.Backend) {
	ctx := events.WithActor(context.Background(), "test")
	st := apitest.Open(t, apitest.DSN(t, db))
	if _, err := ipxe.Load(ctx, st, ipxe.BuiltinCatalog()); err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:7a:00:01"
	var machine int
	err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("tr01.lab.example").Save(ctx)
		if err != nil {
			return err
		}
		machine = m.ID
		if err := tx.NIC.Create().SetMAC(mac).SetMachineID(m.ID).Exec(ctx); err != nil {
			return err
		}
		n, err := tx.Network.Create().SetName("boot").SetCidr("10.88.0.0/16").SetRouter("10.88.0.1").Save(ctx)
		if err != nil {
			return err
		}
		return tx.IPRange.Create().SetNetworkID(n.ID).SetFirst("10.88.1.0").SetLast("10.88.1.254").SetPurpose(iprange.PurposeDHCP).Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(&ipxe.Handler{Backend: &ipxe.DB{Store: st}, Tokens: ipxe.Tokens{Key: []byte("k")}})
	defer web.Close()
	conn := newMemConn()
	srv, err := dhcp.Config{Mode: dhcp.Authoritative, Interface: "trace", ServerIP: netip.MustParseAddr("10.88.0.1"),
		Store: st, Conn: conn, Log: quiet, Boot: dhcp.Boot{ScriptURL: web.URL + "/boot/ipxe"}}.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	hw, _ := net.ParseMAC(mac)
	exchange := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		t.Helper()
		d, _ := dhcpv4.NewDiscovery(hw, mods...)
		d.GatewayIPAddr = relay.IP
		conn.in <- d.ToBytes()
		o, err := dhcpv4.FromBytes(<-conn.out)
		if err != nil || o.MessageType() != dhcpv4.MessageTypeOffer {
			t.Fatalf("want an OFFER, got %v (%v)", o, err)
		}
		r, _ := dhcpv4.NewRequestFromOffer(o, mods...)
		r.GatewayIPAddr = relay.IP
		conn.in <- r.ToBytes()
		ack, err := dhcpv4.FromBytes(<-conn.out)
		if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("want an ACK, got %v (%v)", ack, err)
		}
		return ack
	}
	rom := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}
	if ack := exchange(rom...); ack.BootFileName != "undionly.kpxe" {
		t.Fatalf("PXE ROM boot file %q", ack.BootFileName)
	}
	ack := exchange(append(rom, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))...)
	url := ack.BootFileName
	prefix := web.URL + "/boot/ipxe?mac=" + mac + "&trace="
	if !strings.HasPrefix(url, prefix) || len(url) == len(prefix) {
		t.Fatalf("iPXE boot file %q, want %s<trace>", url, prefix)
	}
	trace := strings.TrimPrefix(url, prefix)

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(script), " prybar.trace="+trace+" ") {
		t.Errorf("script does not carry trace %s:\n%s", trace, script)
	}
	l, err := st.Client.Lease.Query().Where(lease.MAC(mac)).Only(ctx)
	if err != nil || l.Trace != trace || l.State != lease.StateBOUND {
		t.Errorf("stored lease %+v (%v), want BOUND with trace %s", l, err, trace)
	}

	boots, err := agentapi.Timeline(ctx, st.Client, machine, 5)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	if len(boots) == 1 {
		for _, s := range boots[0].Steps {
			steps = append(steps, s.What)
		}
	}
	if want := "lease.offered lease.bound lease.offered lease.bound script"; len(boots) != 1 || boots[0].Trace != trace || strings.Join(steps, " ") != want {
		t.Errorf("timeline: %d boots, trace %q, steps %q; want 1 boot with trace %s and steps %q", len(boots),
			func() string {
				if len(boots) > 0 {
					return boots[0].Trace
				}
				return ""
			}(), steps, trace, want)
	}
}
