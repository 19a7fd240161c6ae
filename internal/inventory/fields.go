package inventory

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/hook"
	"github.com/prybar/prybar/internal/domain"
)

// Text limits. Every string an operator or a discovery agent writes is checked here, for every
// writer, before ent's own validators: no NUL byte (PostgreSQL refuses it, C tools truncate at it),
// valid UTF-8, and a length bound so one record cannot carry megabytes.
const (
	// DefaultMaxLen bounds a string field not listed in maxLen.
	DefaultMaxLen = 255
	// MaxDescriptionLen bounds prose fields.
	MaxDescriptionLen = 4096
)

// maxLen lists the fields whose bound differs from DefaultMaxLen, by schema field name.
var maxLen = map[string]int{
	"name":        253, // a machine's FQDN; shorter names are bounded by their own validators
	"description": MaxDescriptionLen,
	"location":    1024,
	"password":    1024,
	"status":      MaxDescriptionLen,
}

// textTypes are the types whose strings come from outside (API, fixtures, discovery). Run, Event
// and Operation carry logs the system writes.
var textTypes = map[string]bool{
	"Site": true, "Rack": true, "Machine": true, "NIC": true, "Disk": true, "BMC": true,
	"Network": true, "IPRange": true, "IPAllocation": true, "Deployment": true, "Role": true, "Attribute": true,
}

// CheckText refuses NUL bytes, invalid UTF-8 and overlong values; field is the GraphQL name.
func CheckText(field, v string, max int) error {
	if strings.IndexByte(v, 0) >= 0 {
		return domain.Errorf(field, domain.Invalid, "contains a NUL byte")
	}
	if !utf8.ValidString(v) {
		return domain.Errorf(field, domain.Invalid, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(v); n > max {
		return domain.Errorf(field, domain.Invalid, "is %d characters long; the limit is %d", n, max)
	}
	return nil
}

// textHook applies CheckText to every string field a mutation sets.
func textHook(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		if !textTypes[m.Type()] || m.Op().Is(ent.OpDelete|ent.OpDeleteOne) {
			return next.Mutate(ctx, m)
		}
		for _, f := range m.Fields() {
			v, _ := m.Field(f)
			max, ok := maxLen[f]
			if !ok {
				max = DefaultMaxLen
			}
			var vals []string
			switch v := v.(type) {
			case string:
				vals = []string{v}
			case []string:
				vals = v
			}
			for _, s := range vals {
				if err := CheckText(domain.GraphQLName(f), s, max); err != nil {
					return nil, err
				}
			}
		}
		if nm, ok := m.(*ent.NetworkMutation); ok {
			if err := checkDNSServers(nm); err != nil {
				return nil, err
			}
		}
		return next.Mutate(ctx, m)
	})
}

// checkMAC refuses addresses no NIC has: group (multicast, including broadcast) and all-zero.
func checkMAC(hw net.HardwareAddr) error {
	switch {
	case hw.String() == "00:00:00:00:00:00":
		return domain.Errorf("mac", domain.Invalid, "00:00:00:00:00:00 is not a NIC's address")
	case hw.String() == "ff:ff:ff:ff:ff:ff":
		return domain.Errorf("mac", domain.Invalid, "ff:ff:ff:ff:ff:ff is the broadcast address")
	case hw[0]&1 == 1:
		return domain.Errorf("mac", domain.Invalid, "%s is a multicast address (the first octet is odd)", hw)
	}
	return nil
}

// hostLabel is one RFC 1123 label.
var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// CheckHost accepts an IP address (IPv6 with or without brackets) or a DNS host name.
func CheckHost(field, s string) error {
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		if a.IsUnspecified() || a.IsMulticast() {
			return domain.Errorf(field, domain.Invalid, "%s cannot be a BMC's address", a)
		}
		return nil
	}
	h := strings.TrimSuffix(s, ".")
	if h == "" || len(h) > 253 {
		return domain.Errorf(field, domain.Invalid, "%q is not a host name or an IP address", s)
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabel.MatchString(l) {
			return domain.Errorf(field, domain.Invalid, "%q is not a host name or an IP address (no scheme, port or path: those are separate fields)", s)
		}
	}
	// A dotted name of digits only is a malformed IPv4 address, not a host name.
	if strings.Trim(h, "0123456789.") == "" {
		return domain.Errorf(field, domain.Invalid, "%q is not a valid IP address", s)
	}
	return nil
}

func bmcHook(next ent.Mutator) ent.Mutator {
	return hook.BMCFunc(func(ctx context.Context, m *ent.BMCMutation) (ent.Value, error) {
		if a, ok := m.Address(); ok {
			a = strings.TrimSpace(a)
			if err := CheckHost("address", a); err != nil {
				return nil, err
			}
			m.SetAddress(a)
		}
		if s, ok := m.Scheme(); ok {
			s = strings.ToLower(strings.TrimSpace(s))
			if s != "https" && s != "http" {
				return nil, domain.Errorf("scheme", domain.Invalid, "%q is not a scheme: use https, or http for simulators", s)
			}
			m.SetScheme(s)
		}
		if p, ok := m.Port(); ok && (p < 1 || p > 65535) {
			return nil, domain.Errorf("port", domain.OutOfRange, "port %d is not 1–65535 (leave it unset for the protocol's default)", p)
		}
		return next.Mutate(ctx, m)
	})
}

// numberHook gives the numeric bounds clear messages (ent's say only "value out of range").
func numberHook(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		if m.Op().Is(ent.OpDelete | ent.OpDeleteOne) {
			return next.Mutate(ctx, m)
		}
		for _, b := range bounds[m.Type()] {
			v, ok := m.Field(b.field)
			if !ok {
				continue
			}
			var n int64
			switch x := v.(type) {
			case int:
				n = int64(x)
			case int64:
				n = x
			default:
				continue
			}
			if n < b.min || n > b.max {
				return nil, domain.Errorf(domain.GraphQLName(b.field), domain.OutOfRange, "%d is not within %d–%d", n, b.min, b.max)
			}
		}
		return next.Mutate(ctx, m)
	})
}

type bound struct {
	field    string
	min, max int64
}

const maxInt64 = 1<<63 - 1

var bounds = map[string][]bound{
	"Machine": {{"u_position", 1, 60}, {"u_height", 1, 60}, {"cpu_count", 0, 1 << 20}, {"memory_bytes", 0, maxInt64}},
	"Rack":    {{"height", 1, 60}, {"position", 0, 1 << 20}},
	"NIC":     {{"speed_mbps", 0, 10_000_000}},
	"Disk":    {{"size_bytes", 0, maxInt64}},
	"Network": {{"vlan", 0, 4094}},
}

// checkDNSServers requires every DNS server a network hands out over DHCP (set or appended) to be
// an IP address: a name or garbage there would be sent to every client as option 6.
func checkDNSServers(m *ent.NetworkMutation) error {
	check := func(field string, vals []string) error {
		for _, v := range vals {
			if _, err := netip.ParseAddr(v); err != nil {
				return domain.Errorf(field, domain.Invalid, "%q is not an IP address", v)
			}
		}
		return nil
	}
	if v, ok := m.DNSServers(); ok {
		if err := check("dnsServers", v); err != nil {
			return err
		}
	}
	if v, ok := m.AppendedDNSServers(); ok {
		return check("appendDNSServers", v)
	}
	return nil
}
