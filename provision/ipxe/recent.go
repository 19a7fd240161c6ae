package ipxe

import (
	"net/netip"
	"sync"
	"time"
)

// recentBoots remembers which machine fetched a script from which address, so the asset fetches
// that follow from that address are attributed to it even when the address is not one of the
// machine's allocations (a discovery-pool lease, another server's address in proxy mode).
type recentBoots struct {
	mu sync.Mutex
	m  map[netip.Addr]recentBoot
}

type recentBoot struct {
	id int
	at time.Time
}

const (
	recentTTL = 30 * time.Minute // a boot fetches its files within minutes of its script
	recentMax = 1 << 16          // bound the memory whatever the traffic
)

func (r *recentBoots) put(a netip.Addr, id int, now time.Time) {
	if !a.IsValid() || id == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[netip.Addr]recentBoot{}
	}
	if len(r.m) >= recentMax {
		for k, v := range r.m {
			if now.Sub(v.at) > recentTTL {
				delete(r.m, k)
			}
		}
		if len(r.m) >= recentMax {
			clear(r.m)
		}
	}
	r.m[a] = recentBoot{id: id, at: now}
}

func (r *recentBoots) get(a netip.Addr, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.m[a]
	if !ok || now.Sub(b.at) > recentTTL {
		return 0
	}
	return b.id
}
