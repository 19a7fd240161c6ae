package agentapi

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// uuidVariants are the spellings under which a machine's records may hold the UUID the agent read
// from DMI (SMBIOS type 1, decoded by the kernel). A machine known only by its BMC got its UUID
// from the IPMI system GUID, whose byte order BMCs disagree on (IPMI order: all 16 bytes
// reversed; SMBIOS order: the first three fields little-endian; RFC 4122 order), and the decoder
// has to guess which one a BMC used. Whatever the BMC sent and however it was decoded, the
// recorded UUID is one of: u, u with the first three fields byte-swapped, u reversed, or those
// two combined either way. Other spellings of one random UUID coinciding with another machine's
// UUID is not a practical risk; placeholder UUIDs never get here (usableID).
func uuidVariants(u string) []string {
	out := []string{u, strings.ToUpper(u)}
	b, err := hex.DecodeString(strings.ReplaceAll(u, "-", ""))
	if err != nil || len(b) != 16 {
		return out
	}
	swap := func(b []byte) []byte {
		s := append([]byte(nil), b...)
		s[0], s[1], s[2], s[3] = b[3], b[2], b[1], b[0]
		s[4], s[5] = b[5], b[4]
		s[6], s[7] = b[7], b[6]
		return s
	}
	rev := func(b []byte) []byte {
		r := make([]byte, 16)
		for i := range r {
			r[i] = b[15-i]
		}
		return r
	}
	seen := map[string]bool{}
	out = out[:0]
	for _, v := range [][]byte{b, swap(b), rev(b), rev(swap(b)), swap(rev(b))} {
		s := fmt.Sprintf("%x-%x-%x-%x-%x", v[0:4], v[4:6], v[6:8], v[8:10], v[10:16])
		for _, s := range []string{s, strings.ToUpper(s)} {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}
