package ipmi

import (
	"context"
	"fmt"
	"time"

	goipmi "github.com/bougou/go-ipmi/pkg/client"
)

// GUID is the 16 bytes of a Get System GUID answer (App 0x37), first received byte first.
//
// Which UUID those bytes spell depends on the BMC. The IPMI specification sends the whole UUID
// least-significant byte first; many BMCs instead send the bytes of the host's SMBIOS type 1
// table (first three fields little-endian, the rest in order), which is also what the host's
// /sys/class/dmi/id/product_uuid decodes; a few send RFC 4122 order. String picks one the way
// ipmitool's `mc guid` does, so the UUID Prybar records is the one an operator sees there.
type GUID [16]byte

// GUIDEncoding names a byte order of a GUID answer.
type GUIDEncoding string

// The encodings, as ipmitool spells them.
const (
	GUIDSMBIOS  GUIDEncoding = "smbios"
	GUIDIPMI    GUIDEncoding = "ipmi"
	GUIDRFC4122 GUIDEncoding = "rfc4122"
)

// SystemGUID reads the system GUID (Get System GUID, NetFn App, command 0x37). A BMC without
// the command answers with a completion code, returned as an *Error.
func (c *Client) SystemGUID(ctx context.Context) (GUID, error) {
	var g GUID
	err := c.do(ctx, "get system guid", true, func(ctx context.Context, gc *goipmi.Client) error {
		res, err := gc.GetSystemGUID(ctx)
		if err != nil {
			return err
		}
		g = GUID(res.GUID)
		return nil
	})
	return g, err
}

// Decode returns the UUID the bytes spell in enc, in the canonical lower-case form
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).
func (g GUID) Decode(enc GUIDEncoding) string {
	var u [16]byte
	switch enc {
	case GUIDIPMI:
		for i := range u {
			u[i] = g[15-i]
		}
	case GUIDSMBIOS:
		u = g
		u[0], u[1], u[2], u[3] = g[3], g[2], g[1], g[0]
		u[4], u[5] = g[5], g[4]
		u[6], u[7] = g[7], g[6]
	default:
		u = g
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Encoding guesses the byte order as ipmitool 1.8.19's `mc guid` does by default: decodings
// whose version nibble is 1 to 5 are plausible; a version-1 (time-based) one whose timestamp
// falls between 1970 and now wins; otherwise the first plausible of smbios, ipmi, rfc4122; with
// none plausible, rfc4122 (the bytes as received).
func (g GUID) Encoding() GUIDEncoding {
	encs := []GUIDEncoding{GUIDSMBIOS, GUIDIPMI, GUIDRFC4122}
	var plausible []GUIDEncoding
	for _, enc := range encs {
		u := g.Decode(enc)
		v := hexNibble(u[14])
		if v < 1 || v > 5 {
			continue
		}
		if v == 1 && timeBased(u) {
			return enc
		}
		plausible = append(plausible, enc)
	}
	if len(plausible) > 0 {
		return plausible[0]
	}
	return GUIDRFC4122
}

// String is the UUID in the guessed encoding (see Encoding).
func (g GUID) String() string { return g.Decode(g.Encoding()) }

// IsZero reports a GUID of all zero or all 0xff bytes: BMCs answer those when none was set.
func (g GUID) IsZero() bool {
	var zero, ones GUID
	for i := range ones {
		ones[i] = 0xff
	}
	return g == zero || g == ones
}

func hexNibble(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// timeBased reports whether a version-1 UUID's 60-bit timestamp (100 ns since 1582-10-15) lies
// between the Unix epoch and now.
func timeBased(u string) bool {
	var ts uint64
	// time_hi (without the version nibble), time_mid, time_low.
	for _, c := range u[15:18] + u[9:13] + u[0:8] {
		ts = ts<<4 | uint64(hexNibble(byte(c)))
	}
	const gregorianToUnix = 0x01b21dd213814000 // 100 ns intervals from 1582-10-15 to 1970-01-01
	if ts < gregorianToUnix {
		return false
	}
	sec := int64((ts - gregorianToUnix) / 10_000_000)
	return time.Unix(sec, 0).Year() <= time.Now().Year()
}
