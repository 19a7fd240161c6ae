package inventory

import (
	"context"
	"fmt"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/deployment"
	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/network"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/operation"
	"github.com/prybar/prybar/ent/predicate"
	"github.com/prybar/prybar/ent/rack"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/machinestate"
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

// DeleteMachine deletes a machine with everything that only describes it: NICs, disks, BMC,
// address allocations, its operations (finished ones: history of a machine that no longer
// exists) and its node-roles with their runs. It refuses, naming what blocks, while an operation
// is pending or running, while one of its node-roles is in TRANSITION, or while one of its
// node-roles is a parent of a node-role on another machine (deleting it would orphan that one).
func DeleteMachine(ctx context.Context, tx *ent.Tx, id int) error {
	m, err := tx.Machine.Get(ctx, id)
	if ent.IsNotFound(err) {
		return notFound("machine", id)
	} else if err != nil {
		return err
	}
	if op, err := tx.Operation.Query().Where(operation.MachineID(id),
		operation.StateIn(operation.StatePENDING, operation.StateRUNNING)).Order(ent.Asc(operation.FieldID)).First(ctx); err == nil {
		return domain.Errorf("id", domain.Conflict, "machine %s has operation %d (%s) %s: wait for it to finish", m.Name, op.ID, op.Action, op.State)
	} else if !ent.IsNotFound(err) {
		return err
	}
	nrs, err := tx.NodeRole.Query().Where(noderole.MachineID(id)).WithRole().Order(ent.Asc(noderole.FieldID)).All(ctx)
	if err != nil {
		return err
	}
	if err := refuseBusy(fmt.Sprintf("machine %s", m.Name), nrs); err != nil {
		return err
	}
	ids := make([]int, len(nrs))
	for i, nr := range nrs {
		ids[i] = nr.ID
	}
	if err := refuseOrphans(ctx, tx, fmt.Sprintf("machine %s", m.Name), ids,
		noderole.MachineIDNEQ(id)); err != nil {
		return err
	}
	if err := deleteNodeRoles(ctx, tx, ids); err != nil {
		return err
	}
	if _, err := tx.Operation.Delete().Where(operation.MachineID(id)).Exec(ctx); err != nil {
		return err
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

// DeleteDeployment deletes a deployment with its node-roles and their runs, and re-derives the
// state of the machines they were on. It refuses, naming what blocks, for the root deployment
// "system", for a deployment with child deployments, while one of its node-roles is in
// TRANSITION, or while one of them is a parent of a node-role in another deployment.
func DeleteDeployment(ctx context.Context, tx *ent.Tx, id int) error {
	d, err := tx.Deployment.Get(ctx, id)
	if ent.IsNotFound(err) {
		return notFound("deployment", id)
	} else if err != nil {
		return err
	}
	if d.Name == "system" && d.ParentID == nil {
		return domain.Errorf("id", domain.Conflict, "deployment system is the root of every deployment and cannot be deleted")
	}
	kids, err := tx.Deployment.Query().Where(deployment.ParentID(id)).Order(ent.Asc(deployment.FieldName)).All(ctx)
	if err != nil {
		return err
	}
	if len(kids) > 0 {
		names := make([]string, len(kids))
		for i, k := range kids {
			names[i] = k.Name
		}
		return domain.Errorf("id", domain.Conflict, "deployment %s has child deployments %s: delete them first", d.Name, strings.Join(names, ", "))
	}
	nrs, err := tx.NodeRole.Query().Where(noderole.DeploymentID(id)).WithRole().WithMachine().Order(ent.Asc(noderole.FieldID)).All(ctx)
	if err != nil {
		return err
	}
	if err := refuseBusy(fmt.Sprintf("deployment %s", d.Name), nrs); err != nil {
		return err
	}
	ids := make([]int, len(nrs))
	machines := make([]int, 0, len(nrs))
	for i, nr := range nrs {
		ids[i] = nr.ID
		machines = append(machines, nr.MachineID)
	}
	if err := refuseOrphans(ctx, tx, fmt.Sprintf("deployment %s", d.Name), ids,
		noderole.DeploymentIDNEQ(id)); err != nil {
		return err
	}
	if err := deleteNodeRoles(ctx, tx, ids); err != nil {
		return err
	}
	if err := tx.Deployment.DeleteOneID(id).Exec(ctx); err != nil {
		return err
	}
	return machinestate.Sync(ctx, tx, machines)
}

// refuseBusy refuses a delete while a node-role of owner is in TRANSITION: its run is acting on
// the machine and will report back.
func refuseBusy(owner string, nrs []*ent.NodeRole) error {
	for _, nr := range nrs {
		if nr.State == noderole.StateTRANSITION {
			return domain.Errorf("id", domain.Conflict, "%s has node-role %d (%s) in TRANSITION: wait for its run to finish",
				owner, nr.ID, roleName(nr))
		}
	}
	return nil
}

// refuseOrphans refuses a delete that would leave a node-role outside the deleted set (other)
// without one of its parents.
func refuseOrphans(ctx context.Context, tx *ent.Tx, owner string, ids []int, other predicate.NodeRole) error {
	if len(ids) == 0 {
		return nil
	}
	for start := 0; start < len(ids); start += deleteChunk {
		part := ids[start:min(start+deleteChunk, len(ids))]
		child, err := tx.NodeRole.Query().Where(other, noderole.HasParentsWith(noderole.IDIn(part...))).
			WithRole().WithMachine().WithDeployment().WithParents(func(q *ent.NodeRoleQuery) { q.Where(noderole.IDIn(part...)).WithRole() }).
			Order(ent.Asc(noderole.FieldID)).First(ctx)
		if ent.IsNotFound(err) {
			continue
		} else if err != nil {
			return err
		}
		p := child.Edges.Parents[0]
		return domain.Errorf("id", domain.Conflict,
			"%s has node-role %d (%s), a parent of node-role %d (%s) of machine %s in deployment %s: delete that first",
			owner, p.ID, roleName(p), child.ID, roleName(child), child.Edges.Machine.Name, child.Edges.Deployment.Name)
	}
	return nil
}

// deleteChunk bounds the ids in one IN (…) list.
const deleteChunk = 2000

// deleteNodeRoles deletes node-roles with their runs (the parent/child rows go with them). The
// delete is a compare-and-swap on "not in TRANSITION": a run the annealer claimed since the
// node-roles were read makes the whole delete fail as a conflict instead of pulling the
// node-role from under its run.
func deleteNodeRoles(ctx context.Context, tx *ent.Tx, ids []int) error {
	for start := 0; start < len(ids); start += deleteChunk {
		part := ids[start:min(start+deleteChunk, len(ids))]
		if _, err := tx.Run.Delete().Where(run.NodeRoleIDIn(part...)).Exec(ctx); err != nil {
			return err
		}
		n, err := tx.NodeRole.Delete().Where(noderole.IDIn(part...), noderole.StateNEQ(noderole.StateTRANSITION)).Exec(ctx)
		if err != nil {
			return err
		}
		if n != len(part) {
			return domain.Errorf("id", domain.Conflict, "a node-role started running while it was being deleted: try again when it has finished")
		}
	}
	return nil
}

func roleName(nr *ent.NodeRole) string {
	if nr.Edges.Role != nil {
		return nr.Edges.Role.Name
	}
	return fmt.Sprintf("role %d", nr.RoleID)
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
