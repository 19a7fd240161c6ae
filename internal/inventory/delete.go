package inventory

import (
	"context"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/network"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/rack"
	"github.com/prybar/prybar/internal/domain"
)

// Deletes are explicit rather than database cascades so that every removed record emits its own
// event. A container that still holds things an operator placed (racks in a site, machines in a
// rack) refuses deletion instead of taking them with it.

func notFound(what string, id int) error {
	return domain.Errorf("id", domain.NotFound, "%s %d does not exist", what, id)
}

func deleteOne(ctx context.Context, what string, id int, exec func() error) error {
	err := exec()
	if ent.IsNotFound(err) {
		return notFound(what, id)
	}
	return err
}

// DeleteSite deletes an empty site.
func DeleteSite(ctx context.Context, tx *ent.Tx, id int) error {
	if n, err := tx.Rack.Query().Where(rack.SiteID(id)).Count(ctx); err != nil {
		return err
	} else if n > 0 {
		return domain.Errorf("id", domain.Conflict, "site still holds %d racks: delete or move them first", n)
	}
	if n, err := tx.Network.Query().Where(network.SiteID(id)).Count(ctx); err != nil {
		return err
	} else if n > 0 {
		return domain.Errorf("id", domain.Conflict, "site still holds %d networks", n)
	}
	return deleteOne(ctx, "site", id, func() error { return tx.Site.DeleteOneID(id).Exec(ctx) })
}

// DeleteRack deletes an empty rack.
func DeleteRack(ctx context.Context, tx *ent.Tx, id int) error {
	if n, err := tx.Machine.Query().Where(machine.RackID(id)).Count(ctx); err != nil {
		return err
	} else if n > 0 {
		return domain.Errorf("id", domain.Conflict, "rack still holds %d machines: move or delete them first", n)
	}
	return deleteOne(ctx, "rack", id, func() error { return tx.Rack.DeleteOneID(id).Exec(ctx) })
}

// DeleteMachine deletes a machine with its NICs, disks, BMC and address allocations. A machine
// with node-roles refuses: unbind its roles first, so no orchestration state is dropped silently.
func DeleteMachine(ctx context.Context, tx *ent.Tx, id int) error {
	if ok, err := tx.Machine.Query().Where(machine.ID(id)).Exist(ctx); err != nil {
		return err
	} else if !ok {
		return notFound("machine", id)
	}
	if n, err := tx.NodeRole.Query().Where(noderole.MachineID(id)).Count(ctx); err != nil {
		return err
	} else if n > 0 {
		return domain.Errorf("id", domain.Conflict, "machine has %d node-roles: unbind them first", n)
	}
	if _, err := tx.NIC.Delete().Where(nic.MachineID(id)).Exec(ctx); err != nil {
		return err
	}
	if _, err := tx.Disk.Delete().Where(disk.MachineID(id)).Exec(ctx); err != nil {
		return err
	}
	if _, err := tx.BMC.Delete().Where(bmc.MachineID(id)).Exec(ctx); err != nil {
		return err
	}
	if _, err := tx.IPAllocation.Delete().Where(ipallocation.MachineID(id)).Exec(ctx); err != nil {
		return err
	}
	return tx.Machine.DeleteOneID(id).Exec(ctx)
}

// DeleteNIC deletes a NIC.
func DeleteNIC(ctx context.Context, tx *ent.Tx, id int) error {
	return deleteOne(ctx, "NIC", id, func() error { return tx.NIC.DeleteOneID(id).Exec(ctx) })
}

// DeleteDisk deletes a disk.
func DeleteDisk(ctx context.Context, tx *ent.Tx, id int) error {
	return deleteOne(ctx, "disk", id, func() error { return tx.Disk.DeleteOneID(id).Exec(ctx) })
}

// DeleteBMC deletes a BMC record.
func DeleteBMC(ctx context.Context, tx *ent.Tx, id int) error {
	return deleteOne(ctx, "BMC", id, func() error { return tx.BMC.DeleteOneID(id).Exec(ctx) })
}

// DeleteNetwork deletes a network and its ranges; a network with allocations refuses.
func DeleteNetwork(ctx context.Context, tx *ent.Tx, id int) error {
	if n, err := tx.IPAllocation.Query().Where(ipallocation.NetworkID(id)).Count(ctx); err != nil {
		return err
	} else if n > 0 {
		return domain.Errorf("id", domain.Conflict, "network has %d allocated addresses: release them first", n)
	}
	if _, err := tx.IPRange.Delete().Where(iprange.NetworkID(id)).Exec(ctx); err != nil {
		return err
	}
	return deleteOne(ctx, "network", id, func() error { return tx.Network.DeleteOneID(id).Exec(ctx) })
}

// DeleteIPRange deletes a range.
func DeleteIPRange(ctx context.Context, tx *ent.Tx, id int) error {
	return deleteOne(ctx, "IP range", id, func() error { return tx.IPRange.DeleteOneID(id).Exec(ctx) })
}

// DeleteIPAllocation releases an address.
func DeleteIPAllocation(ctx context.Context, tx *ent.Tx, id int) error {
	return deleteOne(ctx, "IP allocation", id, func() error { return tx.IPAllocation.DeleteOneID(id).Exec(ctx) })
}
