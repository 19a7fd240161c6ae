package graph

import (
	"context"

	"github.com/prybar/prybar/graph/model"
	"github.com/prybar/prybar/provision/dhcp"
)

// dhcpStatus reports the running DHCP server (off when serve started none).
func (r *Resolver) dhcpStatus(ctx context.Context) (*model.DHCPStatus, error) {
	if r.dhcp == nil {
		return &model.DHCPStatus{Mode: string(dhcp.Off), PoolUse: []*model.DHCPPoolUse{}}, nil
	}
	st := r.dhcp.Status()
	iface := st.Interface
	out := &model.DHCPStatus{Mode: string(st.Mode), Interface: &iface, Leases: st.Leases,
		Received: int(st.Received), Answered: int(st.Answered), Malformed: int(st.Malformed),
		Dropped: int(st.Dropped), PoolUse: []*model.DHCPPoolUse{}}
	for _, u := range r.dhcp.PoolUse() {
		n, err := r.client.Network.Get(ctx, u.NetworkID)
		if err != nil {
			continue // deleted since the last inventory reload
		}
		out.PoolUse = append(out.PoolUse, &model.DHCPPoolUse{Network: n, Used: u.Used, Free: u.Free})
	}
	return out, nil
}
