package ipxe

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bootenv"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
)

// DB is the Backend over Prybar's store.
type DB struct {
	Store *store.Store
	Log   *slog.Logger
}

var _ Backend = (*DB)(nil)

// Machine implements Backend.
func (db *DB) Machine(ctx context.Context, mac string, id int) (Data, error) {
	if mac != "" {
		// Through the NIC table's unique index (machine.HasNicsWith would test every machine).
		n, err := db.Store.Client.NIC.Query().Where(nic.MAC(mac)).Only(ctx)
		if ent.IsNotFound(err) {
			return Data{}, ErrUnknownMachine
		}
		if err != nil {
			return Data{}, err
		}
		id = n.MachineID
	}
	q := db.Store.Client.Machine.Query().Where(machine.ID(id))
	m, err := q.WithNics(func(q *ent.NICQuery) { q.Order(ent.Asc(nic.FieldID)) }).
		WithAllocations(func(q *ent.IPAllocationQuery) { q.WithNetwork().Order(ent.Asc(ipallocation.FieldID)) }).
		WithNodeRoles(func(q *ent.NodeRoleQuery) { q.Order(ent.Asc(noderole.FieldCohort), ent.Asc(noderole.FieldID)) }).
		Only(ctx)
	if ent.IsNotFound(err) {
		return Data{}, ErrUnknownMachine
	}
	if err != nil {
		return Data{}, err
	}
	return MachineData(m, mac), nil
}

// MachineData turns a machine loaded with its NICs, allocations (with networks) and node-roles
// into template data. mac names the NIC that asked, if any.
func MachineData(m *ent.Machine, mac string) Data {
	d := Data{Machine: Machine{ID: m.ID, Name: m.Name, Serial: m.Serial, UUID: m.UUID, Arch: m.Arch,
		Vendor: m.Vendor, Model: m.Model, State: string(m.State), Bootenv: m.Bootenv, Discovery: m.Discovery},
		NICs: []NIC{}, Allocations: []Allocation{}, Attributes: map[string]any{}}
	for _, n := range m.Edges.Nics {
		d.NICs = append(d.NICs, NIC{MAC: n.MAC, Name: n.Name})
		if n.MAC == mac {
			d.NIC = NIC{MAC: n.MAC, Name: n.Name}
		}
	}
	for _, a := range m.Edges.Allocations {
		al := Allocation{Address: a.Address, Purpose: a.Purpose}
		if nw := a.Edges.Network; nw != nil {
			al.Network = Network{Name: nw.Name, CIDR: nw.Cidr, Router: nw.Router, VLAN: nw.Vlan}
			if p, err := netip.ParsePrefix(nw.Cidr); err == nil {
				al.Network.Prefix = p.Bits()
				al.Network.Netmask = net.IP(net.CIDRMask(p.Bits(), p.Addr().BitLen())).String()
			}
		}
		d.Allocations = append(d.Allocations, al)
	}
	if len(d.Allocations) > 0 {
		d.Allocation = &d.Allocations[0]
	}
	for _, nr := range m.Edges.NodeRoles {
		maps.Copy(d.Attributes, nr.CommittedData)
		maps.Copy(d.Attributes, nr.Wall)
	}
	return d
}

// Bootenv implements Backend.
func (db *DB) Bootenv(ctx context.Context, name string) (*Bootenv, error) {
	row, err := db.Store.Client.Bootenv.Query().Where(bootenv.Name(name)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrUnknownBootenv
	}
	if err != nil {
		return nil, err
	}
	return fromRow(row), nil
}

func fromRow(r *ent.Bootenv) *Bootenv {
	return &Bootenv{Name: r.Name, Description: r.Description, Kernel: r.Kernel, Initrd: r.Initrd,
		Cmdline: r.Cmdline, Script: r.Script, Templates: r.Templates, Builtin: r.Builtin, Source: r.Source}
}

// MachineByIP implements Backend from the machine's address allocations.
//
// Hook for DHCP leases: once the Lease type exists, a client that got a discovery address (no
// allocation) is found through its lease's MAC → NIC → machine; add that lookup here.
func (db *DB) MachineByIP(ctx context.Context, addr netip.Addr) int {
	if !addr.IsValid() {
		return 0
	}
	a, err := db.Store.Client.IPAllocation.Query().
		Where(ipallocation.Address(addr.String()), ipallocation.MachineIDNotNil()).First(ctx)
	if err != nil || a.MachineID == nil {
		return 0
	}
	return *a.MachineID
}

// Done implements Backend: machine id goes from env to local, with a boot.done event.
func (db *DB) Done(ctx context.Context, id int, env string) (bool, error) {
	var flipped bool
	err := db.Store.Tx(events.WithActor(ctx, "boot"), func(ctx context.Context, tx *ent.Tx) error {
		n, err := tx.Machine.Update().Where(machine.ID(id), machine.Bootenv(env)).SetBootenv(Local).Save(ctx)
		if err != nil || n == 0 {
			return err
		}
		flipped = true
		return events.Emit(ctx, "boot.done", "machine", id, &id, map[string]any{"bootenv": env, "next": Local})
	})
	return flipped, err
}

// Record implements Backend. A failure to record is logged, not returned: the machine must still
// get its file.
func (db *DB) Record(ctx context.Context, kind string, machineID int, changes map[string]any) {
	typ, mid := "machine", &machineID
	if machineID == 0 {
		typ, mid = "boot", nil
	}
	err := db.Store.Tx(events.WithActor(context.WithoutCancel(ctx), "boot"), func(ctx context.Context, tx *ent.Tx) error {
		return events.Emit(ctx, kind, typ, machineID, mid, changes)
	})
	if err != nil && db.Log != nil {
		db.Log.Error("record boot event", "kind", kind, "machine", machineID, "err", err)
	}
}

// LoadResult says what Load changed.
type LoadResult struct{ Created, Updated, Unchanged []string }

func (r LoadResult) String() string {
	return fmt.Sprintf("%d bootenvs created, %d updated, %d unchanged", len(r.Created), len(r.Updated), len(r.Unchanged))
}

// Load upserts every bootenv of cat by name in one transaction, writing only rows that differ.
// Bootenvs stored earlier and absent from cat stay (a machine may still be in one).
func Load(ctx context.Context, st *store.Store, cat *Catalog) (LoadResult, error) {
	var res LoadResult
	err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		res = LoadResult{}
		for _, b := range cat.All() {
			cur, err := tx.Bootenv.Query().Where(bootenv.Name(b.Name)).Only(ctx)
			switch {
			case ent.IsNotFound(err):
				err = tx.Bootenv.Create().SetName(b.Name).SetDescription(b.Description).SetKernel(b.Kernel).
					SetInitrd(b.Initrd).SetCmdline(b.Cmdline).SetScript(b.Script).SetTemplates(b.Templates).
					SetBuiltin(b.Builtin).SetSource(b.Source).Exec(ctx)
				res.Created = append(res.Created, b.Name)
			case err != nil:
			case same(fromRow(cur), b):
				res.Unchanged = append(res.Unchanged, b.Name)
			default:
				err = cur.Update().SetDescription(b.Description).SetKernel(b.Kernel).
					SetInitrd(b.Initrd).SetCmdline(b.Cmdline).SetScript(b.Script).SetTemplates(b.Templates).
					SetBuiltin(b.Builtin).SetSource(b.Source).Exec(ctx)
				res.Updated = append(res.Updated, b.Name)
			}
			if err != nil {
				return fmt.Errorf("bootenv %s: %w", b.Name, err)
			}
		}
		return nil
	})
	return res, err
}

func same(a, b *Bootenv) bool {
	return a.Name == b.Name && a.Description == b.Description && a.Kernel == b.Kernel &&
		slices.Equal(a.Initrd, b.Initrd) && a.Cmdline == b.Cmdline && a.Script == b.Script &&
		maps.Equal(a.Templates, b.Templates) && a.Builtin == b.Builtin && a.Source == b.Source
}

// LoadDir validates the built-ins plus dir's files as one catalogue and stores them.
func LoadDir(ctx context.Context, st *store.Store, dir string) (LoadResult, error) {
	cat, err := ReadDir(dir)
	if err != nil {
		return LoadResult{}, err
	}
	return Load(ctx, st, cat)
}

// Stored returns every stored bootenv, by name.
func Stored(ctx context.Context, c *ent.Client) ([]*ent.Bootenv, error) {
	return c.Bootenv.Query().Order(ent.Asc(bootenv.FieldName)).All(ctx)
}

// SetBootenv sets machine id's bootenv inside tx (from Recorder.Tx): an unknown bootenv or machine
// is a NOT_FOUND domain error.
func SetBootenv(ctx context.Context, tx *ent.Tx, id int, name string) (*ent.Machine, error) {
	exists, err := tx.Bootenv.Query().Where(bootenv.Name(name)).Exist(ctx)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, domain.Errorf("bootenv", domain.NotFound, "no bootenv %q (see the bootenvs query)", name)
	}
	m, err := tx.Machine.UpdateOneID(id).SetBootenv(name).Save(ctx)
	if ent.IsNotFound(err) {
		return nil, domain.Errorf("machineID", domain.NotFound, "no machine %d", id)
	}
	return m, err
}
