package tftp_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/prybar/prybar/provision/tftp"
)

// FuzzParseRequest feeds arbitrary datagrams to the request parser: it must never panic, and a
// request it accepts must name a path that stays inside the root.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("\x00\x01undionly.kpxe\x00octet\x00"))
	f.Add([]byte("\x00\x01undionly.kpxe\x00octet\x00blksize\x001468\x00tsize\x000\x00"))
	f.Add([]byte("\x00\x01../etc/passwd\x00octet\x00"))
	f.Add([]byte("\x00\x02up.bin\x00netascii\x00"))
	f.Add([]byte("\x00\x01x\x00octet\x00blksize\x00"))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := tftp.ParseRequest(pkt)
		if err != nil {
			return
		}
		if !fs.ValidPath(r.Name) || r.Name == "." || strings.Contains(r.Name, "..") && !validDots(r.Name) {
			t.Fatalf("accepted name %q escapes the root", r.Name)
		}
		if r.Blksize != 0 && (r.Blksize < tftp.MinBlksize || r.Blksize > tftp.MaxBlksize) {
			t.Fatalf("accepted blksize %d", r.Blksize)
		}
		if r.Mode != "octet" && r.Mode != "netascii" {
			t.Fatalf("accepted mode %q", r.Mode)
		}
	})
}

// validDots: ".." inside an element ("a..b") is a legal name; only a whole ".." element escapes.
func validDots(p string) bool {
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return false
		}
	}
	return true
}
