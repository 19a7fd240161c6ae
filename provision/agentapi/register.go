package agentapi

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/agenttask"
	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/provision/agent"
	"github.com/prybar/prybar/provision/ipxe"
)

// Bounds of a report: a real machine is far inside them; a report outside is refused whole.
const (
	maxNICs   = 64
	maxDisks  = 256
	maxString = 256
)

// validate checks a report and normalises its MACs.
func validate(reg *agent.Register) error {
	inv := &reg.Inventory
	if len(inv.NICs) == 0 {
		return fail(http.StatusUnprocessableEntity, "inventory: no network interface")
	}
	if len(inv.NICs) > maxNICs || len(inv.Disks) > maxDisks {
		return fail(http.StatusUnprocessableEntity, "inventory: more than %d NICs or %d disks", maxNICs, maxDisks)
	}
	if inv.CPU.Count <= 0 || inv.CPU.Count > 1<<16 || inv.MemoryBytes < 0 {
		return fail(http.StatusUnprocessableEntity, "inventory: cpu count %d, memory %d out of range", inv.CPU.Count, inv.MemoryBytes)
	}
	strs := []string{inv.DMI.Vendor, inv.DMI.Product, inv.DMI.Serial, inv.DMI.UUID, inv.CPU.Model, reg.Trace}
	seen := map[string]bool{}
	for i := range inv.NICs {
		n := &inv.NICs[i]
		mac, err := ipxe.NormalizeMAC(n.MAC)
		if err != nil {
			return fail(http.StatusUnprocessableEntity, "inventory: nics[%d]: %v", i, err)
		}
		if seen[mac] {
			return fail(http.StatusUnprocessableEntity, "inventory: MAC %s reported twice", mac)
		}
		seen[mac] = true
		n.MAC = mac
		if n.SpeedMbps < 0 {
			return fail(http.StatusUnprocessableEntity, "inventory: nics[%d]: negative speed", i)
		}
		strs = append(strs, n.Name, n.Driver, n.PCI)
	}
	for i, d := range inv.Disks {
		if d.Name == "" || d.SizeBytes < 0 {
			return fail(http.StatusUnprocessableEntity, "inventory: disks[%d]: needs a name and a size ≥ 0", i)
		}
		strs = append(strs, d.Name, d.Model, d.Serial, d.WWN)
	}
	for k, v := range inv.DHCP {
		strs = append(strs, k, v)
	}
	for _, s := range strs {
		if len(s) > maxString {
			return fail(http.StatusUnprocessableEntity, "inventory: a value is longer than %d bytes", maxString)
		}
	}
	if reg.BootMAC != "" {
		mac, err := ipxe.NormalizeMAC(reg.BootMAC)
		if err != nil || !seen[mac] {
			return fail(http.StatusUnprocessableEntity, "bootMac %q is not one of the reported NICs", reg.BootMAC)
		}
		reg.BootMAC = mac
	}
	return nil
}

// junkIDs are placeholder serials and UUIDs firmware reports when nobody set one; they identify
// nothing and must not match machines to each other.
var junkIDs = map[string]bool{"": true, "0": true, "none": true, "not specified": true, "to be filled by o.e.m.": true,
	"default string": true, "system serial number": true, "0123456789": true,
	"00000000-0000-0000-0000-000000000000": true, "ffffffff-ffff-ffff-ffff-ffffffffffff": true,
	"03000200-0400-0500-0006-000700080009": true}

func usableID(s string) bool { return !junkIDs[strings.ToLower(strings.TrimSpace(s))] }

func (s *Server) register(r *http.Request) (any, error) {
	if err := method(r, http.MethodPost); err != nil {
		return nil, err
	}
	// The token is checked before the body is read: a stranger's report is not even parsed.
	tokID, scope, err := s.Tokens.Verify(bearer(r), s.now())
	if err != nil || !strings.HasPrefix(scope, bootScope) {
		return nil, fail(http.StatusUnauthorized, "invalid or expired agent boot token")
	}
	trace, tokMAC, _ := strings.Cut(strings.TrimPrefix(scope, bootScope), "/")
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	var reg agent.Register
	if err := decode(data, &reg); err != nil {
		return nil, err
	}
	if err := validate(&reg); err != nil {
		return nil, err
	}
	if reg.Trace != "" && reg.Trace != trace {
		return nil, fail(http.StatusForbidden, "the report names boot %q but the token is for boot %q", reg.Trace, trace)
	}
	macs := make([]string, len(reg.Inventory.NICs))
	for i, n := range reg.Inventory.NICs {
		macs[i] = n.MAC
	}
	if tokID == 0 {
		// A token issued to an unknown machine is scoped by the MAC that booted.
		if tokMAC == "" || !contains(macs, tokMAC) {
			return nil, fail(http.StatusForbidden, "the token was issued to NIC %q, which this report does not have", tokMAC)
		}
	}
	bootMAC := reg.BootMAC
	if bootMAC == "" {
		bootMAC = tokMAC
	}
	if bootMAC == "" {
		bootMAC = macs[0]
	}
	ctx := events.WithActor(r.Context(), "agent")
	var out agent.Registered
	var conflict *httpError
	err = s.Store.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		conflict = nil
		ids, err := candidates(ctx, tx, reg.Inventory, macs)
		if err != nil {
			return err
		}
		switch {
		case len(ids) > 1:
			// Never a silent merge: each machine matched gets the conflict recorded, and the agent a
			// 409; an operator resolves it (by fixing the records).
			msg := fmt.Sprintf("the agent's report (boot %s, MACs %s, serial %q, UUID %q) matches machines %v", trace,
				strings.Join(macs, ","), reg.Inventory.DMI.Serial, reg.Inventory.DMI.UUID, ids)
			for _, id := range ids {
				if err := tx.Machine.UpdateOneID(id).SetDiscoveryConflict(msg).Exec(ctx); err != nil {
					return err
				}
				mid := id
				if err := events.Emit(ctx, "machine.discovery_conflict", "machine", id, &mid, map[string]any{"trace": trace, "machines": ids, "error": msg}); err != nil {
					return err
				}
			}
			de := domain.Errorf("machine", domain.Conflict, "%s", msg)
			conflict = &httpError{status: http.StatusConflict, msg: msg, extra: map[string]any{"code": de.Code, "machines": ids}}
			return nil
		case len(ids) == 1 && tokID != 0 && ids[0] != tokID:
			return fail(http.StatusForbidden, "the token is for machine %d but the report matches machine %d", tokID, ids[0])
		case len(ids) == 0 && tokID != 0:
			// The script was rendered for machine tokID, yet nothing in the report matches it: that
			// is the same machine only when its records know no NIC (a machine known only by its
			// BMC); otherwise another machine is using its token.
			n, err := tx.NIC.Query().Where(nic.MachineID(tokID)).Count(ctx)
			if err != nil {
				return err
			}
			if n > 0 {
				return fail(http.StatusForbidden, "the token is for machine %d, whose NICs are not in this report", tokID)
			}
			ids = []int{tokID}
		}
		if len(ids) == 0 {
			out, err = s.create(ctx, tx, reg, bootMAC, trace)
		} else {
			out, err = s.merge(ctx, tx, ids[0], reg, trace)
		}
		if err != nil {
			return err
		}
		mid := out.Machine
		if err := s.failLostTasks(ctx, tx, mid, trace); err != nil {
			return err
		}
		return events.Emit(ctx, "agent.registered", "machine", mid, &mid, map[string]any{"trace": trace, "created": out.Created,
			"client": clientIP(r), "mac": bootMAC, "step": "agent check-in", "start": s.now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00")})
	})
	if err != nil {
		return nil, err
	}
	if conflict != nil {
		return nil, conflict
	}
	out.Session = s.Tokens.Issue(out.Machine, sessionScope+trace, s.now())
	return out, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// candidates are the machines the inventory matches: by any NIC MAC, by DMI serial, by DMI UUID
// (in any byte order a BMC's system GUID may have given it: see uuidVariants).
func candidates(ctx context.Context, tx *ent.Tx, inv agent.Inventory, macs []string) ([]int, error) {
	// MACs through the NIC table's unique index: machine.HasNicsWith would test every machine.
	byMAC, err := tx.NIC.Query().Where(nic.MACIn(macs...)).Select(nic.FieldMachineID).Ints(ctx)
	if err != nil {
		return nil, err
	}
	set := map[int]bool{}
	for _, id := range byMAC {
		set[id] = true
	}
	var preds []func(*ent.MachineQuery) *ent.MachineQuery
	if usableID(inv.DMI.Serial) {
		preds = append(preds, func(q *ent.MachineQuery) *ent.MachineQuery { return q.Where(machine.Serial(inv.DMI.Serial)) })
	}
	if usableID(inv.DMI.UUID) {
		preds = append(preds, func(q *ent.MachineQuery) *ent.MachineQuery {
			return q.Where(machine.UUIDIn(uuidVariants(strings.ToLower(inv.DMI.UUID))...))
		})
	}
	for _, p := range preds {
		ids, err := p(tx.Machine.Query()).IDs(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			set[id] = true
		}
	}
	out := make([]int, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Ints(out)
	return out, nil
}

// Raw is the inventory as stored in Machine.discovery.
func Raw(inv agent.Inventory) map[string]any {
	return map[string]any{"source": "agent", "agent": inv}
}

func diskKind(d agent.Disk) disk.Kind { return disk.Kind(d.Kind()) }

func (s *Server) create(ctx context.Context, tx *ent.Tx, reg agent.Register, bootMAC, trace string) (agent.Registered, error) {
	inv := reg.Inventory
	pat := s.NamePattern
	if pat == "" {
		pat = "d-{mac}.discovered"
	}
	name := strings.ReplaceAll(pat, "{mac}", strings.ReplaceAll(bootMAC, ":", ""))
	m, err := tx.Machine.Create().SetName(name).SetSerial(inv.DMI.Serial).SetUUID(inv.DMI.UUID).
		SetVendor(inv.DMI.Vendor).SetModel(inv.DMI.Product).SetCPUCount(inv.CPU.Count).SetMemoryBytes(inv.MemoryBytes).
		SetState(machine.StateDISCOVERED).SetAlive(true).SetDiscovery(Raw(inv)).Save(ctx)
	if err != nil {
		return agent.Registered{}, fmt.Errorf("create discovered machine %s: %w", name, err)
	}
	for _, n := range inv.NICs {
		link := n.Link
		if err := tx.NIC.Create().SetMachineID(m.ID).SetMAC(n.MAC).SetName(n.Name).SetSpeedMbps(n.SpeedMbps).
			SetLink(link).SetPxe(n.MAC == bootMAC).Exec(ctx); err != nil {
			return agent.Registered{}, err
		}
	}
	for _, d := range inv.Disks {
		if err := tx.Disk.Create().SetMachineID(m.ID).SetName(d.Name).SetSizeBytes(d.SizeBytes).SetModel(d.Model).
			SetSerial(d.Serial).SetKind(diskKind(d)).Exec(ctx); err != nil {
			return agent.Registered{}, err
		}
	}
	mid := m.ID
	if err := events.Emit(ctx, "machine.discovered", "machine", m.ID, &mid, map[string]any{"name": name, "trace": trace}); err != nil {
		return agent.Registered{}, err
	}
	return agent.Registered{Machine: m.ID, Name: name, Created: true}, nil
}

// merge updates a known machine: the raw inventory, identity fields the records left empty, the
// observed attributes of known NICs and disks; NICs and disks are added only when the records
// planned none (otherwise a difference is drift for an operator, not something to overwrite).
func (s *Server) merge(ctx context.Context, tx *ent.Tx, id int, reg agent.Register, trace string) (agent.Registered, error) {
	inv := reg.Inventory
	m, err := tx.Machine.Query().Where(machine.ID(id)).WithNics().WithDisks().Only(ctx)
	if err != nil {
		return agent.Registered{}, err
	}
	drift := Drift(m, inv)
	// Other sources' views (the BMC's, under "bmc") are kept, as oob.ApplyInventory keeps the
	// agent's.
	disc := Raw(inv)
	for k, v := range m.Discovery {
		if _, mine := disc[k]; !mine {
			disc[k] = v
		}
	}
	up := tx.Machine.UpdateOneID(id).SetDiscovery(disc).SetAlive(true).SetDrift(drift).ClearDiscoveryConflict()
	if m.Serial == "" {
		up.SetSerial(inv.DMI.Serial)
	}
	if m.UUID == "" {
		up.SetUUID(inv.DMI.UUID)
	}
	if m.Vendor == "" {
		up.SetVendor(inv.DMI.Vendor)
	}
	if m.Model == "" {
		up.SetModel(inv.DMI.Product)
	}
	if m.CPUCount == 0 {
		up.SetCPUCount(inv.CPU.Count)
	}
	if m.MemoryBytes == 0 {
		up.SetMemoryBytes(inv.MemoryBytes)
	}
	if m.State == machine.StateNEW {
		up.SetState(machine.StateDISCOVERED)
	}
	if err := up.Exec(ctx); err != nil {
		return agent.Registered{}, err
	}
	known := map[string]*ent.NIC{}
	for _, n := range m.Edges.Nics {
		known[n.MAC] = n
	}
	for _, n := range inv.NICs {
		if k, ok := known[n.MAC]; ok {
			if k.Name != n.Name || k.SpeedMbps != n.SpeedMbps || k.Link == nil || *k.Link != n.Link {
				if err := k.Update().SetName(n.Name).SetSpeedMbps(n.SpeedMbps).SetLink(n.Link).Exec(ctx); err != nil {
					return agent.Registered{}, err
				}
			}
		} else if len(m.Edges.Nics) == 0 {
			if err := tx.NIC.Create().SetMachineID(id).SetMAC(n.MAC).SetName(n.Name).SetSpeedMbps(n.SpeedMbps).
				SetLink(n.Link).SetPxe(n.MAC == reg.BootMAC).Exec(ctx); err != nil {
				return agent.Registered{}, err
			}
		}
	}
	if len(m.Edges.Disks) == 0 {
		for _, d := range inv.Disks {
			if err := tx.Disk.Create().SetMachineID(id).SetName(d.Name).SetSizeBytes(d.SizeBytes).SetModel(d.Model).
				SetSerial(d.Serial).SetKind(diskKind(d)).Exec(ctx); err != nil {
				return agent.Registered{}, err
			}
		}
	}
	if !reflect.DeepEqual(normalize(m.Drift), normalize(drift)) {
		if err := events.Emit(ctx, "machine.drift", "machine", id, &id, map[string]any{"drift": drift, "trace": trace}); err != nil {
			return agent.Registered{}, err
		}
	}
	return agent.Registered{Machine: id, Name: m.Name, Drift: drift}, nil
}

// failLostTasks ends the machine's tasks still RUNNING on an earlier boot: an agent registering
// for a new boot means the machine restarted, and the agent that ran them (and held their
// results) is gone, so their results can never arrive. Left RUNNING, every re-run of their
// node-role would find and wait on them until the role's timeout, again on each retry. They end
// FAILED, so the node-role's retry policy decides what happens next (a task's script must not
// reboot the machine itself: the agent's REBOOT task delivers its result first).
func (s *Server) failLostTasks(ctx context.Context, tx *ent.Tx, machine int, trace string) error {
	lost, err := tx.AgentTask.Query().Where(agenttask.MachineID(machine), agenttask.StateEQ(agenttask.StateRUNNING),
		agenttask.BootNEQ(trace)).All(ctx)
	if err != nil {
		return err
	}
	for _, t := range lost {
		msg := fmt.Sprintf("the machine booted again (boot %s) while the task ran on boot %s: its result was lost", trace, t.Boot)
		if err := tx.AgentTask.UpdateOneID(t.ID).SetState(agenttask.StateFAILED).SetExitCode(-1).SetError(msg).
			SetFinishedAt(s.now()).Exec(ctx); err != nil {
			return err
		}
		ch := map[string]any{"task": t.ID, "name": t.Name, "state": string(agenttask.StateFAILED), "exitCode": -1, "trace": t.Boot,
			"lost": true, "error": msg, "step": "task " + t.Name + " end", "start": s.now().UTC().Format(time.RFC3339Nano)}
		if err := events.Emit(ctx, "agent.task.end", "machine", machine, &machine, ch); err != nil {
			return err
		}
	}
	return nil
}
