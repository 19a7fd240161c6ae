package inventory

import (
	"net/netip"
	"testing"
)

func TestHostAddresses(t *testing.T) {
	for _, tc := range []struct {
		prefix, addr string
		host         bool
	}{
		{"10.0.0.0/24", "10.0.0.1", true},
		{"10.0.0.0/24", "10.0.0.0", false},
		{"10.0.0.0/24", "10.0.0.255", false},
		{"10.0.0.0/24", "10.0.1.1", false},
		{"10.16.0.0/12", "10.31.255.255", false},
		{"10.16.0.0/12", "10.16.1.0", true},
		{"10.0.0.0/31", "10.0.0.0", true},
		{"10.0.0.0/31", "10.0.0.1", true},
		{"10.0.0.7/32", "10.0.0.7", true},
		{"fd00::/64", "fd00::", false},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff", true}, // no broadcast in IPv6
		{"fd00::/127", "fd00::", true},
	} {
		err := checkHost("x", netip.MustParseAddr(tc.addr), netip.MustParsePrefix(tc.prefix), "address")
		if (err == nil) != tc.host {
			t.Errorf("%s in %s: err = %v, want host=%v", tc.addr, tc.prefix, err, tc.host)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	for p, ok := range map[string]bool{"0.0.0.0/0": false, "::/0": false, "10.0.0.0/8": true, "8.0.0.0/7": false,
		"224.0.0.0/24": false, "127.0.0.0/8": true, "0.0.0.0/8": false, "fd00::/16": true, "fd00::/15": false, "10.1.2.3/32": true} {
		if err := checkPrefix(netip.MustParsePrefix(p)); (err == nil) != ok {
			t.Errorf("checkPrefix(%s) = %v, want ok=%v", p, err, ok)
		}
	}
}
