package main

import "testing"

// The discovery bootenv passes iPXE's DHCP result; an unset iPXE setting expands to nothing.
func TestParseIPConfig(t *testing.T) {
	for _, tc := range []struct{ cmdline, addr, gw string }{
		{"quiet prybar.ip=10.77.0.100/255.255.255.0 prybar.gw=10.77.0.1 prybar.url=http://x", "10.77.0.100/24", "10.77.0.1"},
		{"prybar.ip=10.1.2.3/16 prybar.gw=", "10.1.2.3/16", "<nil>"},
		{"prybar.ip=10.1.2.3/255.255.255.0 prybar.gw=0.0.0.0", "10.1.2.3/24", "<nil>"},
		{"prybar.ip=/ prybar.gw=", "", ""},
		{"prybar.ip=0.0.0.0/0.0.0.0", "", ""},
		{"prybar.ip=10.1.2.3/255.0.255.0", "", ""},
		{"prybar.ip=10.1.2.3", "", ""},
		{"prybar.ip=fe80::1/64", "", ""},
		{"console=ttyS0", "", ""},
	} {
		c := parseIPConfig(tc.cmdline)
		if tc.addr == "" {
			if c != nil {
				t.Errorf("%q: got %v, want none", tc.cmdline, c.addr)
			}
			continue
		}
		if c == nil || c.addr.String() != tc.addr || c.gw.String() != tc.gw {
			t.Errorf("%q: got %+v, want %s via %s", tc.cmdline, c, tc.addr, tc.gw)
		}
	}
}
