package oob

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prybar/prybar/ent"
	entbmc "github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/scheduler/executor"
)

// Inventorier is a controller that can read hardware inventory (the Redfish client is one; IPMI
// has no standard inventory beyond FRU text, so IPMI discovery records power and liveness only).
type Inventorier interface {
	Inventory(ctx context.Context) (*redfish.Inventory, error)
}

// GUIDReader is a controller that can read the system GUID (the IPMI client: Get System GUID).
// For an IPMI-only machine it is the one identity the BMC knows that the machine's own firmware
// reports too (SMBIOS type 1 UUID, what the discovery agent reads), so recording it as the
// machine's UUID lets the agent's report find the machine known only by its BMC.
type GUIDReader interface {
	SystemGUID(ctx context.Context) (ipmi.GUID, error)
}

// readGUID records the GUID as inv.UUID. A BMC that answers without one (a completion code:
// the command is optional) or with an unset one (all zero or all ones) leaves the UUID empty;
// a BMC that does not answer fails the run, which is retried: discovery without the identity
// would let the agent create a second machine.
func readGUID(ctx context.Context, gr GUIDReader, inv *redfish.Inventory, logf func(string, ...any)) error {
	g, err := gr.SystemGUID(ctx)
	cc, answered := ipmi.CompletionCode(err)
	switch {
	case answered:
		logf("no system GUID (the BMC answered completion code %#02x); the machine's UUID stays unknown", cc)
		return nil
	case err != nil:
		return fmt.Errorf("oob: read system GUID: %w", err)
	case g.IsZero():
		logf("system GUID not set (%x); the machine's UUID stays unknown", g[:])
		return nil
	}
	inv.UUID = g.String()
	logf("system GUID %x: UUID %s (%s byte order)", g[:], inv.UUID, g.Encoding())
	return nil
}

func (e *Executor) inventory(ctx context.Context, ctl bmc.Controller, out, output map[string]any, private *any, logf func(string, ...any)) error {
	// The power state is part of discovery, and a BMC that cannot report it is not healthy enough
	// to be called discovered.
	cur, err := state(ctx, ctl)
	if err != nil {
		return err
	}
	out["power"] = string(cur)
	var inv *redfish.Inventory
	if ir, ok := ctl.(Inventorier); ok {
		if inv, err = ir.Inventory(ctx); err != nil {
			return fmt.Errorf("oob: read inventory: %w", err)
		}
		logf("inventory: %s %s serial %q, %d CPUs, %d bytes memory, %d NICs, %d disks",
			inv.Manufacturer, inv.Model, inv.SerialNumber, inv.ProcessorCount, inv.MemoryBytes, len(inv.NICs), len(inv.Disks))
	} else {
		inv = &redfish.Inventory{}
		logf("protocol has no inventory; recording power state and liveness only")
	}
	if gr, ok := ctl.(GUIDReader); ok && inv.UUID == "" {
		if err := readGUID(ctx, gr, inv, logf); err != nil {
			return err
		}
	}
	inv.PowerState = cur
	output[OutputInventory] = InventoryOutput(inv)
	*private = inv
	return nil
}

// Commit implements executor.Committer: the annealer calls it inside the transaction that records
// an inventory run's success, and it writes the inventory onto the machine (ApplyInventory).
// Other actions have nothing to write.
func (e *Executor) Commit(ctx context.Context, tx *ent.Tx, in executor.Input, res executor.Result) error {
	inv, ok := res.Private.(*redfish.Inventory)
	if !ok || inv == nil {
		return nil
	}
	if err := ApplyInventory(ctx, tx, in.Machine.ID, inv); err != nil {
		return fmt.Errorf("oob: record inventory of machine %q: %w", in.Machine.Name, err)
	}
	return nil
}

// InventoryOutput is the inventory as it appears in the run's output (the wall) and in the
// machine's discovery JSON: plain JSON values under stable snake_case keys.
func InventoryOutput(inv *redfish.Inventory) map[string]any {
	b, _ := json.Marshal(inv)
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	nics := make([]any, 0, len(inv.NICs))
	for _, n := range inv.NICs {
		nics = append(nics, map[string]any{"name": n.Name, "mac": n.MACAddress, "speed_mbps": n.SpeedMbps, "link": n.LinkStatus})
	}
	disks := make([]any, 0, len(inv.Disks))
	for _, d := range inv.Disks {
		disks = append(disks, map[string]any{"name": diskName(d), "size_bytes": d.CapacityBytes, "model": d.Model, "serial": d.SerialNumber, "kind": d.Kind})
	}
	return map[string]any{
		"source":       "bmc",
		"vendor":       inv.Manufacturer,
		"model":        inv.Model,
		"serial":       inv.SerialNumber,
		"uuid":         inv.UUID,
		"sku":          inv.SKU,
		"bios_version": inv.BIOSVersion,
		"power":        string(inv.PowerState),
		"cpu_count":    inv.ProcessorCount,
		"memory_bytes": inv.MemoryBytes,
		"processors":   raw["Processors"],
		"nics":         nics,
		"disks":        disks,
		"read_at":      time.Now().UTC().Format(time.RFC3339),
	}
}

// diskName is the record name of a drive: its Redfish Id when it has one (unique within the
// system, unlike display names such as "Drive"), else its Name.
func diskName(d redfish.Disk) string {
	if d.ID != "" {
		return d.ID
	}
	return d.Name
}

// ApplyInventory writes inv onto machine machineID inside tx:
//
//   - Machine: vendor, model, serial, uuid, cpu_count, memory_bytes (only fields the BMC
//     reported; empty values never erase what an agent found), discovery (the BMC's view under
//     the "bmc" key, other sources' keys kept), alive = true.
//   - NICs, matched by MAC: created when new, updated (name, speed, link) when they belong to
//     this machine. A MAC recorded on another machine is a conflict and fails the whole
//     transaction: two machines claiming one MAC means a mis-cabled or mis-recorded BMC, and
//     moving the NIC silently would hide it.
//   - Disks, matched by name within the machine: created or updated (size, model, serial, kind).
//
// NICs and disks the BMC no longer reports are kept: BMCs see less than the in-band agent (no
// add-in cards on some, no NVMe on others), so absence here is not evidence of removal.
func ApplyInventory(ctx context.Context, tx *ent.Tx, machineID int, inv *redfish.Inventory) error {
	m, err := tx.Machine.Get(ctx, machineID)
	if err != nil {
		if ent.IsNotFound(err) {
			return domain.Errorf("machineID", domain.NotFound, "machine %d does not exist", machineID)
		}
		return err
	}
	upd := tx.Machine.UpdateOneID(machineID).SetAlive(true)
	setStr := func(v string, set func(string) *ent.MachineUpdateOne) {
		if strings.TrimSpace(v) != "" {
			set(strings.TrimSpace(v))
		}
	}
	setStr(inv.Manufacturer, upd.SetVendor)
	setStr(inv.Model, upd.SetModel)
	setStr(inv.SerialNumber, upd.SetSerial)
	setStr(strings.ToLower(inv.UUID), upd.SetUUID)
	if inv.ProcessorCount > 0 {
		upd.SetCPUCount(inv.ProcessorCount)
	}
	if inv.MemoryBytes > 0 {
		upd.SetMemoryBytes(inv.MemoryBytes)
	}
	if len(inv.Processors) > 0 && inv.Processors[0].Arch != "" {
		if a := archOf(inv.Processors[0].Arch); a != "" {
			upd.SetArch(a)
		}
	}
	disc := map[string]any{}
	for k, v := range m.Discovery {
		disc[k] = v
	}
	disc["bmc"] = InventoryOutput(inv)
	upd.SetDiscovery(disc)
	if err := upd.Exec(ctx); err != nil {
		return err
	}
	if inv.SystemID != "" {
		// Bind the machine to the system discovery read, so it stays bound if the BMC later
		// manages more (a blade added to the chassis). A system id already set is the operator's.
		if _, err := tx.BMC.Update().Where(entbmc.MachineID(machineID), entbmc.Or(entbmc.SystemIDIsNil(), entbmc.SystemIDEQ(""))).
			SetSystemID(inv.SystemID).Save(ctx); err != nil {
			return fmt.Errorf("record the BMC's system id: %w", err)
		}
	}

	for _, n := range inv.NICs {
		mac := redfish.NormalizeMAC(n.MACAddress)
		existing, err := tx.NIC.Query().Where(nic.MAC(mac)).Only(ctx)
		switch {
		case ent.IsNotFound(err):
			c := tx.NIC.Create().SetMachineID(machineID).SetMAC(mac).SetNillableLink(n.LinkUp())
			if n.Name != "" {
				c.SetName(n.Name)
			}
			if n.SpeedMbps > 0 {
				c.SetSpeedMbps(n.SpeedMbps)
			}
			if err := c.Exec(ctx); err != nil {
				return fmt.Errorf("NIC %s: %w", mac, err)
			}
		case err != nil:
			return err
		case existing.MachineID != machineID:
			return domain.Errorf("mac", domain.Conflict, "BMC of machine %d reports MAC %s, which is recorded on machine %d", machineID, mac, existing.MachineID)
		default:
			// An unknown link (the BMC did not say) keeps what another source recorded.
			u := existing.Update().SetNillableLink(n.LinkUp())
			if n.Name != "" {
				u.SetName(n.Name)
			}
			if n.SpeedMbps > 0 {
				u.SetSpeedMbps(n.SpeedMbps)
			}
			if err := u.Exec(ctx); err != nil {
				return fmt.Errorf("NIC %s: %w", mac, err)
			}
		}
	}

	for _, d := range inv.Disks {
		name := diskName(d)
		if name == "" {
			continue
		}
		kind := diskKind(d.Kind)
		existing, err := tx.Disk.Query().Where(disk.MachineID(machineID), disk.Name(name)).First(ctx)
		switch {
		case ent.IsNotFound(err):
			c := tx.Disk.Create().SetMachineID(machineID).SetName(name).SetSizeBytes(max(d.CapacityBytes, 0)).SetKind(kind)
			if d.Model != "" {
				c.SetModel(d.Model)
			}
			if d.SerialNumber != "" {
				c.SetSerial(d.SerialNumber)
			}
			if err := c.Exec(ctx); err != nil {
				return fmt.Errorf("disk %s: %w", name, err)
			}
		case err != nil:
			return err
		default:
			u := existing.Update().SetKind(kind)
			if d.CapacityBytes > 0 {
				u.SetSizeBytes(d.CapacityBytes)
			}
			if d.Model != "" {
				u.SetModel(d.Model)
			}
			if d.SerialNumber != "" {
				u.SetSerial(d.SerialNumber)
			}
			if err := u.Exec(ctx); err != nil {
				return fmt.Errorf("disk %s: %w", name, err)
			}
		}
	}
	return nil
}

func diskKind(k string) disk.Kind {
	switch strings.ToLower(k) {
	case "hdd":
		return disk.KindHDD
	case "ssd":
		return disk.KindSSD
	case "nvme":
		return disk.KindNVME
	}
	return disk.KindUNKNOWN
}

// archOf maps a Redfish instruction set to the machine's arch field.
func archOf(s string) string {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "-")) {
	case "x86-64":
		return "x86_64"
	case "arm-a64", "aarch64":
		return "aarch64"
	}
	return ""
}
