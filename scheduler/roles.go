package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// LoadResult says what LoadRoles changed.
type LoadResult struct {
	Created, Updated, Unchanged []string
}

func (r LoadResult) String() string {
	return fmt.Sprintf("%d roles created, %d updated, %d unchanged", len(r.Created), len(r.Updated), len(r.Unchanged))
}

// LoadRoles upserts every role of cat into the Role table by name, in one transaction, and writes
// only rows that differ (so loading the same catalogue again writes nothing and records no
// events). See LoadRoleDefs for the validation.
func (a *Annealer) LoadRoles(ctx context.Context, cat *catalog.Catalog) (LoadResult, error) {
	defs := make([]catalog.Role, 0, len(cat.Roles()))
	for _, r := range cat.Roles() {
		defs = append(defs, *r)
	}
	return a.LoadRoleDefs(ctx, defs)
}

// LoadRolesDir loads the built-in roles plus the role files (*.yaml, *.yml) of each dir.
// Requirements may name built-in roles, roles of the other files, or roles loaded before; a file
// redefining a built-in role is refused (a duplicate, not an override), while reloading a
// directory updates the roles it defined before.
func (a *Annealer) LoadRolesDir(ctx context.Context, dirs ...string) (LoadResult, error) {
	defs, err := ReadRolesDir(dirs...)
	if err != nil {
		return LoadResult{}, err
	}
	return a.LoadRoleDefs(ctx, defs)
}

// ReadRolesDir parses the built-in roles and the role files of dirs (without validating them as a
// set: LoadRoleDefs does that together with the stored roles).
func ReadRolesDir(dirs ...string) ([]catalog.Role, error) {
	var defs []catalog.Role
	builtin := map[string]bool{}
	for _, r := range catalog.Builtin().Roles() {
		defs = append(defs, *r)
		builtin[r.Name] = true
	}
	var errs []error
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
				continue
			}
			p := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			rs, err := catalog.Parse(p, data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, r := range rs {
				if builtin[r.Name] {
					errs = append(errs, &catalog.Error{Pos: r.Pos, Role: r.Name, Err: errors.New("duplicate role (a built-in role has this name)")})
				}
			}
			defs = append(defs, rs...)
		}
	}
	if len(errs) > 0 {
		return nil, catalogError(errors.Join(errs...))
	}
	return defs, nil
}

// LoadRoleDefs validates defs together with the stored roles they do not redefine — so a
// requirement on a role loaded earlier is accepted, and a cycle through one is refused — and
// upserts them by name. Unknown requirements and cycles are domain errors (CYCLE names the cycle,
// "a -> b -> c -> a"); on any error nothing is written.
func (a *Annealer) LoadRoleDefs(ctx context.Context, defs []catalog.Role) (LoadResult, error) {
	var res LoadResult
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		res = LoadResult{}
		existing, err := tx.Role.Query().All(ctx)
		if err != nil {
			return err
		}
		byName := map[string]*ent.Role{}
		for _, r := range existing {
			byName[r.Name] = r
		}
		redefined := map[string]bool{}
		for _, r := range defs {
			redefined[r.Name] = true
		}
		all := slices.Clone(defs)
		for _, r := range existing {
			if !redefined[r.Name] {
				cr, err := catalogRole(r)
				if err != nil {
					return domain.Errorf("roles", domain.Invalid, "stored role %q: %v", r.Name, err)
				}
				all = append(all, cr)
			}
		}
		full, err := catalog.New(all...)
		if err != nil {
			return catalogError(err)
		}
		for _, cr := range full.Roles() {
			if !redefined[cr.Name] {
				continue
			}
			want := roleRow(cr, full.Depth(cr.Name))
			if err := syncAttributes(ctx, tx, cr.Name, want.Schema); err != nil {
				return fmt.Errorf("role %q attributes: %w", cr.Name, err)
			}
			if cur, ok := byName[cr.Name]; ok {
				if sameRole(cur, want) {
					res.Unchanged = append(res.Unchanged, cr.Name)
					continue
				}
				u := tx.Role.UpdateOne(cur)
				setRole(u.Mutation(), want)
				err = u.Exec(ctx)
				res.Updated = append(res.Updated, cr.Name)
			} else {
				c := tx.Role.Create().SetName(want.Name)
				setRole(c.Mutation(), want)
				err = c.Exec(ctx)
				res.Created = append(res.Created, cr.Name)
			}
			if err != nil {
				return fmt.Errorf("role %q: %w", cr.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return LoadResult{}, err
	}
	a.roles.invalidate()
	return res, nil
}

// catalogError turns a catalogue validation error into a domain error: CYCLE when it reports a
// requirement cycle (the message names it), INVALID otherwise.
func catalogError(err error) error {
	var ce *catalog.CycleError
	if errors.As(err, &ce) {
		return domain.Errorf("roles", domain.Cycle, "%s", err.Error())
	}
	return domain.Errorf("roles", domain.Invalid, "%s", err.Error())
}

// roleRow is the Role table row for a catalogue role.
func roleRow(r *catalog.Role, depth int) *ent.Role {
	wants := make([]string, len(r.Wants))
	for i, w := range r.Wants {
		wants[i] = w.String()
	}
	return &ent.Role{
		Name: r.Name, Description: r.Description, Executor: r.Executor,
		Requires: nonNil(r.Requires), Provides: nonNil(r.Provides), Conflicts: nonNil(r.Conflicts), Wants: wants,
		Implicit: r.Flags.Implicit, Cluster: r.Flags.Cluster, Destructive: r.Flags.Destructive, Discovery: r.Flags.Discovery,
		Schema: r.Attributes, Defaults: r.Defaults(),
		RetryAttempts:     r.Retry.Attempts,
		RetryBackoffMs:    r.Retry.Initial.Milliseconds(),
		RetryMaxBackoffMs: maxBackoffMs(r.Retry.Max),
		TimeoutMs:         r.Timeout.Milliseconds(),
		Depth:             depth,
	}
}

// setRole writes every catalogue-derived field of want into m (a create or an update).
func setRole(m *ent.RoleMutation, want *ent.Role) {
	m.SetDescription(want.Description)
	m.SetExecutor(want.Executor)
	m.SetRequires(want.Requires)
	m.SetProvides(want.Provides)
	m.SetConflicts(want.Conflicts)
	m.SetWants(want.Wants)
	m.SetImplicit(want.Implicit)
	m.SetCluster(want.Cluster)
	m.SetDestructive(want.Destructive)
	m.SetDiscovery(want.Discovery)
	m.SetSchema(want.Schema)
	m.SetDefaults(want.Defaults)
	m.SetRetryAttempts(want.RetryAttempts)
	m.SetRetryBackoffMs(want.RetryBackoffMs)
	m.SetRetryMaxBackoffMs(want.RetryMaxBackoffMs)
	m.SetTimeoutMs(want.TimeoutMs)
	m.SetDepth(want.Depth)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func sameRole(cur, want *ent.Role) bool {
	eqS := func(a, b []string) bool { return slices.Equal(nonNil(a), nonNil(b)) }
	eqM := func(a, b map[string]any) bool {
		if len(a) == 0 && len(b) == 0 {
			return true
		}
		return reflect.DeepEqual(jsonRoundTrip(a), jsonRoundTrip(b))
	}
	return cur.Description == want.Description && cur.Executor == want.Executor &&
		eqS(cur.Requires, want.Requires) && eqS(cur.Provides, want.Provides) && eqS(cur.Conflicts, want.Conflicts) &&
		eqS(cur.Wants, want.Wants) && cur.Implicit == want.Implicit && cur.Cluster == want.Cluster &&
		cur.Destructive == want.Destructive && cur.Discovery == want.Discovery &&
		eqM(cur.Schema, want.Schema) && eqM(cur.Defaults, want.Defaults) &&
		cur.RetryAttempts == want.RetryAttempts && cur.RetryBackoffMs == want.RetryBackoffMs &&
		cur.RetryMaxBackoffMs == want.RetryMaxBackoffMs &&
		cur.TimeoutMs == want.TimeoutMs && cur.Depth == want.Depth
}

// catalogRole rebuilds a catalogue role from its stored row (for validation and for the compiled
// attribute schema).
func catalogRole(r *ent.Role) (catalog.Role, error) {
	cr := catalog.Role{
		Name: r.Name, Description: r.Description, Executor: r.Executor,
		Requires: r.Requires, Provides: r.Provides, Conflicts: r.Conflicts,
		Flags:      catalog.Flags{Implicit: r.Implicit, Cluster: r.Cluster, Destructive: r.Destructive, Discovery: r.Discovery},
		Attributes: r.Schema,
		Retry:      retryPolicy(r),
		Timeout:    time.Duration(r.TimeoutMs) * time.Millisecond,
	}
	if len(cr.Attributes) == 0 {
		cr.Attributes = nil
	}
	for _, w := range r.Wants {
		pw, err := catalog.ParseWant(w)
		if err != nil {
			return cr, err
		}
		cr.Wants = append(cr.Wants, pw)
	}
	return cr, nil
}

// defaultMaxBackoff caps automatic-retry delays when the catalogue sets no max_backoff.
const defaultMaxBackoff = 5 * time.Minute

func maxBackoffMs(d time.Duration) int64 {
	if d <= 0 {
		d = defaultMaxBackoff
	}
	return d.Milliseconds()
}

func retryPolicy(r *ent.Role) nodestate.RetryPolicy {
	return nodestate.RetryPolicy{
		Attempts: r.RetryAttempts,
		Initial:  time.Duration(r.RetryBackoffMs) * time.Millisecond,
		Max:      time.Duration(maxBackoffMs(time.Duration(r.RetryMaxBackoffMs)*time.Millisecond)) * time.Millisecond,
	}
}

// roleInfo is a stored role with what the annealer derives from it.
type roleInfo struct {
	*ent.Role
	cat *catalog.Role // compiled schema (requirements left out: validated at load)
	// compileErr says why cat is missing for a role whose stored row does not compile.
	compileErr error
	wants      []catalog.Want
}

// roleCache holds the Role table in memory. Roles are few and change rarely; the runner reloads
// them every sweep and LoadRoles invalidates at once.
type roleCache struct {
	mu     sync.Mutex
	byID   map[int]*roleInfo
	byName map[string]*roleInfo
	loaded time.Time
}

func (c *roleCache) invalidate() {
	c.mu.Lock()
	c.loaded = time.Time{}
	c.mu.Unlock()
}

// get returns the role tables, reloading when older than maxAge.
func (c *roleCache) get(ctx context.Context, client *ent.Client, maxAge time.Duration) (map[int]*roleInfo, map[string]*roleInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID != nil && time.Since(c.loaded) < maxAge {
		return c.byID, c.byName, nil
	}
	rows, err := client.Role.Query().Order(ent.Asc(role.FieldID)).All(ctx)
	if err != nil {
		return nil, nil, err
	}
	byID, byName := map[int]*roleInfo{}, map[string]*roleInfo{}
	for _, r := range rows {
		ri := &roleInfo{Role: r}
		if old, ok := c.byID[r.ID]; ok && old.UpdatedAt.Equal(r.UpdatedAt) {
			ri = old // keep the compiled schema
		} else {
			// A stored role that no longer compiles must not silently accept any attribute:
			// remember why, and validation fails closed.
			cr, err := catalogRole(r)
			if err == nil {
				ri.wants = cr.Wants
				cr.Requires, cr.Conflicts, cr.Wants = nil, nil, nil
				var cat *catalog.Catalog
				if cat, err = catalog.New(cr); err == nil {
					ri.cat, _ = cat.Get(r.Name)
				}
			}
			if err != nil {
				ri.compileErr = fmt.Errorf("stored role %q does not compile (reload the catalogue): %w", r.Name, err)
			}
		}
		byID[r.ID], byName[r.Name] = ri, ri
	}
	c.byID, c.byName, c.loaded = byID, byName, time.Now()
	return byID, byName, nil
}
