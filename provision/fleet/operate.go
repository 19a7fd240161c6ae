package fleet

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Operator drives a running Prybar through its GraphQL API as an operator would: bind a role on
// machines in a new deployment, commit it, and watch the machines' states.
type Operator struct {
	c           *gql
	parallelism int
}

// NewOperator returns an operator of the Prybar serving GraphQL at apiURL (".../graphql" or the
// base URL), with the same options as Register (Token, Parallelism, HTTPClient).
func NewOperator(apiURL string, o RegisterOptions) *Operator {
	c := newGQL(apiURL, &o, 60*time.Second)
	return &Operator{c: c, parallelism: o.Parallelism}
}

// CreateDeployment creates a deployment under system and returns its id.
func (op *Operator) CreateDeployment(ctx context.Context, name string) (string, error) {
	var out struct {
		CreateDeployment struct {
			Deployment *struct{ ID string }
			Errors     []domainError
		}
	}
	if err := op.c.do(ctx, `mutation($n: String!) { createDeployment(name: $n) { deployment { id } errors { field code message } } }`,
		map[string]any{"n": name}, &out); err != nil {
		return "", err
	}
	if out.CreateDeployment.Deployment == nil {
		return "", fmt.Errorf("fleet: create deployment %s: %w", name, errorsOf(out.CreateDeployment.Errors))
	}
	return out.CreateDeployment.Deployment.ID, nil
}

// Bind binds role (with the parents it needs) on every machine in the deployment, Parallelism
// requests at a time; progress, when set, is called after each.
func (op *Operator) Bind(ctx context.Context, deploymentID, role string, machineIDs []string, progress func(done int)) error {
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		wg       sync.WaitGroup
		sem      = make(chan struct{}, op.parallelism)
	)
	for _, id := range machineIDs {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var out struct {
				BindRole struct {
					NodeRole *struct{ ID string }
					Errors   []domainError
				}
			}
			err := op.c.do(ctx, `mutation($m: ID!, $r: String!, $d: ID) { bindRole(machineID: $m, role: $r, deploymentID: $d) { nodeRole { id } errors { field code message } } }`,
				map[string]any{"m": id, "r": role, "d": deploymentID}, &out)
			if err == nil && out.BindRole.NodeRole == nil {
				err = errorsOf(out.BindRole.Errors)
			}
			mu.Lock()
			defer mu.Unlock()
			done++
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("fleet: bind %s on machine %s: %w", role, id, err)
			}
			if progress != nil {
				progress(done)
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// DiscoveryChain is the built-in chain from a machine known by its BMC to ready (docs/discovery.md).
var DiscoveryChain = []string{"bmc-discover", "pxe-discover", "agent-inventory", "discovered-ready"}

// BindChain binds each role of chain on every machine, one role after the other, so each machine
// gets its own chain: a role bound on its own resolves a non-implicit requirement to the oldest
// binding anywhere in the deployment, i.e. another machine's.
func (op *Operator) BindChain(ctx context.Context, deploymentID string, chain, machineIDs []string, progress func(done int)) error {
	for i, role := range chain {
		err := op.Bind(ctx, deploymentID, role, machineIDs, func(done int) {
			if progress != nil {
				progress(i*len(machineIDs) + done)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// MachineIDs lists every machine's id.
func (op *Operator) MachineIDs(ctx context.Context) ([]string, error) {
	var ids []string
	var after any
	for {
		var out struct {
			Machines struct {
				Edges    []struct{ Node struct{ ID string } }
				PageInfo struct {
					HasNextPage bool
					EndCursor   string
				}
			}
		}
		if err := op.c.do(ctx, `query($a: Cursor) { machines(first: 500, after: $a) { edges { node { id } } pageInfo { hasNextPage endCursor } } }`,
			map[string]any{"a": after}, &out); err != nil {
			return nil, err
		}
		for _, e := range out.Machines.Edges {
			ids = append(ids, e.Node.ID)
		}
		if !out.Machines.PageInfo.HasNextPage {
			return ids, nil
		}
		after = out.Machines.PageInfo.EndCursor
	}
}

// Commit commits the deployment.
func (op *Operator) Commit(ctx context.Context, deploymentID string) error {
	var out struct {
		CommitDeployment struct {
			Deployment *struct{ ID string }
			Errors     []domainError
		}
	}
	if err := op.c.do(ctx, `mutation($d: ID!) { commitDeployment(id: $d) { deployment { id } errors { field code message } } }`,
		map[string]any{"d": deploymentID}, &out); err != nil {
		return err
	}
	if out.CommitDeployment.Deployment == nil {
		return fmt.Errorf("fleet: commit: %w", errorsOf(out.CommitDeployment.Errors))
	}
	return nil
}

// Progress is a snapshot of the machines' and node-roles' states.
type Progress struct {
	MachineStates  map[string]int // machines per state (NEW, DISCOVERED, READY, BUSY, ERROR)
	NodeRoles      map[string]int // node-roles per state
	RunsInFlight   int
	QueueLength    int
	FailedExamples []string // a few node-roles in ERROR: "machine role: status"
}

func (p Progress) String() string {
	return fmt.Sprintf("machines %v; node-roles %v; %d runs in flight, %d queued", p.MachineStates, p.NodeRoles, p.RunsInFlight, p.QueueLength)
}

// Progress reads the machine counts per state and the annealer's status.
func (op *Operator) Progress(ctx context.Context) (Progress, error) {
	p := Progress{MachineStates: map[string]int{}, NodeRoles: map[string]int{}}
	var out struct {
		New        struct{ TotalCount int }
		Discovered struct{ TotalCount int }
		Ready      struct{ TotalCount int }
		Busy       struct{ TotalCount int }
		Error      struct{ TotalCount int }
		Annealer   struct {
			States []struct {
				State string
				Count int
			}
			RunsInFlight int
			QueueLength  int
		}
	}
	err := op.c.do(ctx, `{
  new: machines(where: {state: NEW}) { totalCount }
  discovered: machines(where: {state: DISCOVERED}) { totalCount }
  ready: machines(where: {state: READY}) { totalCount }
  busy: machines(where: {state: BUSY}) { totalCount }
  error: machines(where: {state: ERROR}) { totalCount }
  annealer { states { state count } runsInFlight queueLength }
}`, nil, &out)
	if err != nil {
		return p, err
	}
	p.MachineStates["NEW"], p.MachineStates["DISCOVERED"], p.MachineStates["READY"] = out.New.TotalCount, out.Discovered.TotalCount, out.Ready.TotalCount
	p.MachineStates["BUSY"], p.MachineStates["ERROR"] = out.Busy.TotalCount, out.Error.TotalCount
	for _, s := range out.Annealer.States {
		if s.Count > 0 {
			p.NodeRoles[s.State] = s.Count
		}
	}
	p.RunsInFlight, p.QueueLength = out.Annealer.RunsInFlight, out.Annealer.QueueLength
	if p.NodeRoles["ERROR"] > 0 {
		var f struct {
			NodeRoles struct {
				Edges []struct {
					Node struct {
						Status  string
						Role    struct{ Name string }
						Machine struct{ Name string }
					}
				}
			}
		}
		if err := op.c.do(ctx, `{ nodeRoles(first: 3, where: {state: ERROR}) { edges { node { status role { name } machine { name } } } } }`, nil, &f); err == nil {
			for _, e := range f.NodeRoles.Edges {
				p.FailedExamples = append(p.FailedExamples, fmt.Sprintf("%s %s: %s", e.Node.Machine.Name, e.Node.Role.Name, e.Node.Status))
			}
		}
	}
	return p, nil
}
