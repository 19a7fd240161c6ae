package ipmi_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/ipmi/ipmisimtest"
)

func guidOf(t *testing.T, s string) ipmi.GUID {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		t.Fatalf("bad GUID hex %q", s)
	}
	return ipmi.GUID(b)
}

// The three byte orders BMCs use, and the guess between them, against what ipmitool 1.8.19's
// `mc guid` prints for the same bytes (measured against ipmi_sim).
func TestGUIDDecode(t *testing.T) {
	g := guidOf(t, "00112233445566778899aabbccddeeff")
	for enc, want := range map[ipmi.GUIDEncoding]string{
		ipmi.GUIDSMBIOS:  "33221100-5544-7766-8899-aabbccddeeff",
		ipmi.GUIDIPMI:    "ffeeddcc-bbaa-9988-7766-554433221100",
		ipmi.GUIDRFC4122: "00112233-4455-6677-8899-aabbccddeeff",
	} {
		if got := g.Decode(enc); got != want {
			t.Errorf("%s: %s, want %s", enc, got, want)
		}
	}
	for _, c := range []struct {
		hex  string
		enc  ipmi.GUIDEncoding
		uuid string
	}{
		// No decoding has a version of 1..5: the bytes as received.
		{"00112233445566778899aabbccddeeff", ipmi.GUIDRFC4122, "00112233-4455-6677-8899-aabbccddeeff"},
		// A random (v4) UUID as a BMC copying the SMBIOS table sends it.
		{"3e8f0c5a2b1d6f4e8a9b0c1d2e3f4a5b", ipmi.GUIDSMBIOS, "5a0c8f3e-1d2b-4e6f-8a9b-0c1d2e3f4a5b"},
		// The same UUID as the IPMI specification sends it (whole UUID reversed): the SMBIOS
		// decoding has version nibble 0x8 (implausible), the IPMI one 4.
		{"5b4a3f2e1d0c9b8a6f4e2b1d3e8f0c5a", ipmi.GUIDIPMI, "5a0c8f3e-1d2b-4e6f-8a9b-0c1d2e3f4a5b"},
		// A time-based (v1) UUID of 2011 in IPMI order.
		{"0b6f8d4c3b2a9980e1114e1c5a7b3e6d", ipmi.GUIDIPMI, "6d3e7b5a-1c4e-11e1-8099-2a3b4c8d6f0b"},
		// The SMBIOS reading is plausible (version 3), but the IPMI one is version 1 with a
		// timestamp of 2024: the timestamp wins over the smbios-first precedence.
		{"b4e302f110322438ef11840f0809a662", ipmi.GUIDIPMI, "62a60908-0f84-11ef-3824-3210f102e3b4"},
	} {
		g := guidOf(t, c.hex)
		if enc := g.Encoding(); enc != c.enc || g.String() != c.uuid {
			t.Errorf("%s: %s %s, want %s %s", c.hex, enc, g.String(), c.enc, c.uuid)
		}
	}
	if !guidOf(t, "00000000000000000000000000000000").IsZero() || !guidOf(t, "ffffffffffffffffffffffffffffffff").IsZero() || g.IsZero() {
		t.Error("IsZero")
	}
}

// Get System GUID against the real ipmi_sim (lan.conf `guid`): the bytes arrive in lan.conf's
// order, and the UUID the client makes of them is the one ipmitool prints.
func TestRealSimSystemGUID(t *testing.T) {
	ctx := context.Background()
	const smbiosBytes = "3e8f0c5a2b1d6f4e8a9b0c1d2e3f4a5b" // UUID 5a0c8f3e-1d2b-4e6f-8a9b-0c1d2e3f4a5b
	sim := ipmisimtest.Start(t, ipmisimtest.Options{GUID: smbiosBytes})
	c := fast(sim)
	defer c.Close(ctx)
	g, err := c.SystemGUID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(g[:]); got != smbiosBytes {
		t.Fatalf("GUID bytes %s, want %s", got, smbiosBytes)
	}
	if g.String() != "5a0c8f3e-1d2b-4e6f-8a9b-0c1d2e3f4a5b" || g.Encoding() != ipmi.GUIDSMBIOS {
		t.Fatalf("GUID %s (%s)", g, g.Encoding())
	}
	out := sim.Ipmitool(t, "mc", "guid")
	if !strings.Contains(out, "System GUID   : "+g.String()) {
		t.Fatalf("ipmitool mc guid printed\n%s\nwant %s", out, g)
	}
}
