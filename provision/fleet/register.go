package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// RegisterOptions tune Register.
type RegisterOptions struct {
	Site     string // site name (default "fleet-sim"); reused when it exists
	RackSize int    // machines per rack (default 40, one U each, in 42U racks)
	Alive    bool   // create machines with alive=true (the scheduler only runs work on alive machines)
	// Identity records each new machine's UUID (BMC.UUID), as an operator's asset list would:
	// a discovery agent is then matched to the machine even when its BMC reports no NICs (IPMI).
	Identity    bool
	Parallelism int    // concurrent API requests (default 4)
	Token       string // sent as "Authorization: Bearer <token>" when set
	HTTPClient  *http.Client
}

// Registration is what Register created or found: Prybar's machine id per BMC index.
type Registration struct {
	MachineIDs []string // by position in Fleet.BMCs; GraphQL ids as the API returned them
	Created    int      // machines created now (the rest existed already)
}

// newGQL fills o's defaults (Parallelism 4, an HTTP client with timeout) and returns a client of
// the GraphQL endpoint at apiURL (".../graphql", or the server's base URL).
func newGQL(apiURL string, o *RegisterOptions, timeout time.Duration) *gql {
	if o.Parallelism <= 0 {
		o.Parallelism = 4
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: timeout}
	}
	if u := strings.TrimRight(apiURL, "/"); !strings.HasSuffix(u, "/graphql") {
		apiURL = u + "/graphql"
	}
	return &gql{url: apiURL, token: o.Token, hc: o.HTTPClient}
}

// gql is a minimal GraphQL-over-HTTP client.
type gql struct {
	url   string
	token string
	hc    *http.Client
}

type domainError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (c *gql) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fleet: %s: HTTP %d: %s", c.url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var env struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("fleet: bad GraphQL answer: %w", err)
	}
	if len(env.Errors) > 0 {
		msgs := make([]string, len(env.Errors))
		for i, e := range env.Errors {
			msgs[i] = e.Message
		}
		return fmt.Errorf("fleet: GraphQL: %s", strings.Join(msgs, "; "))
	}
	return json.Unmarshal(env.Data, out)
}

func errorsOf(es []domainError) error {
	if len(es) == 0 {
		return nil
	}
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = fmt.Sprintf("%s %s: %s", e.Field, e.Code, e.Message)
	}
	return fmt.Errorf("%s", strings.Join(parts, "; "))
}

func isDuplicate(es []domainError) bool {
	for _, e := range es {
		if e.Code == "DUPLICATE" {
			return true
		}
	}
	return false
}

// Register records every BMC's machine (and its BMC) in the Prybar serving GraphQL at apiURL
// (".../graphql", or the server's base URL). It is idempotent: a site, rack or machine that
// already exists under the same name is reused, and a machine that already has a BMC keeps it.
// Machines fill racks of RackSize, bottom up, in a site of their own.
func (f *Fleet) Register(ctx context.Context, apiURL string, o RegisterOptions) (*Registration, error) {
	if o.Site == "" {
		o.Site = "fleet-sim"
	}
	if o.RackSize <= 0 || o.RackSize > 42 {
		o.RackSize = 40
	}
	c := newGQL(apiURL, &o, 30*time.Second)

	siteID, err := c.site(ctx, o.Site)
	if err != nil {
		return nil, err
	}
	// Positions derive from the BMC's index, so fleets started with different FirstIndex values
	// fill the same racks without colliding.
	rackIDs := map[int]string{}
	for _, b := range f.BMCs {
		r := b.Index / o.RackSize
		if _, ok := rackIDs[r]; ok {
			continue
		}
		if rackIDs[r], err = c.rack(ctx, siteID, o.Site, fmt.Sprintf("%s-rack-%03d", o.Site, r+1)); err != nil {
			return nil, err
		}
	}

	reg := &Registration{MachineIDs: make([]string, len(f.BMCs))}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, o.Parallelism)
	)
	for i, b := range f.BMCs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id, created, err := c.machine(ctx, b, rackIDs[b.Index/o.RackSize], b.Index%o.RackSize+1, o.Alive, o.Identity)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("fleet: register %s: %w", b.Name, err)
				}
				return
			}
			reg.MachineIDs[i] = id
			if created {
				reg.Created++
			}
		}()
	}
	wg.Wait()
	return reg, firstErr
}

func (c *gql) site(ctx context.Context, name string) (string, error) {
	var out struct {
		CreateSite struct {
			Site   *struct{ ID string }
			Errors []domainError
		}
	}
	err := c.do(ctx, `mutation($in: CreateSiteInput!) { createSite(input: $in) { site { id } errors { field code message } } }`,
		map[string]any{"in": map[string]any{"name": name, "description": "simulated BMC fleet (prybar sim fleet)"}}, &out)
	if err != nil {
		return "", err
	}
	if out.CreateSite.Site != nil {
		return out.CreateSite.Site.ID, nil
	}
	if !isDuplicate(out.CreateSite.Errors) {
		return "", fmt.Errorf("fleet: create site %s: %w", name, errorsOf(out.CreateSite.Errors))
	}
	var q struct{ Site *struct{ ID string } }
	if err := c.do(ctx, `query($n: String!) { site(name: $n) { id } }`, map[string]any{"n": name}, &q); err != nil {
		return "", err
	}
	if q.Site == nil {
		return "", fmt.Errorf("fleet: site %s reported duplicate but not found", name)
	}
	return q.Site.ID, nil
}

func (c *gql) rack(ctx context.Context, siteID, siteName, name string) (string, error) {
	var out struct {
		CreateRack struct {
			Rack   *struct{ ID string }
			Errors []domainError
		}
	}
	err := c.do(ctx, `mutation($in: CreateRackInput!) { createRack(input: $in) { rack { id } errors { field code message } } }`,
		map[string]any{"in": map[string]any{"name": name, "height": 42, "siteID": siteID}}, &out)
	if err != nil {
		return "", err
	}
	if out.CreateRack.Rack != nil {
		return out.CreateRack.Rack.ID, nil
	}
	if !isDuplicate(out.CreateRack.Errors) {
		return "", fmt.Errorf("fleet: create rack %s: %w", name, errorsOf(out.CreateRack.Errors))
	}
	return c.findRack(ctx, siteName, name)
}

// findRack looks a rack up by name within the site (rack names are unique per site).
func (c *gql) findRack(ctx context.Context, siteName, name string) (string, error) {
	var q struct {
		Site *struct {
			Racks struct {
				Edges []struct{ Node struct{ ID, Name string } }
			}
		}
	}
	err := c.do(ctx, `query($s: String!, $r: String!) { site(name: $s) { racks(first: 10, where: {name: $r}) { edges { node { id name } } } } }`,
		map[string]any{"s": siteName, "r": name}, &q)
	if err != nil {
		return "", err
	}
	if q.Site != nil {
		for _, e := range q.Site.Racks.Edges {
			if e.Node.Name == name {
				return e.Node.ID, nil
			}
		}
	}
	return "", fmt.Errorf("fleet: rack %s reported duplicate but not found in site %s", name, siteName)
}

// machine creates the machine and its BMC, or finds them.
func (c *gql) machine(ctx context.Context, b *BMC, rackID string, u int, alive, identity bool) (id string, created bool, err error) {
	// Look the machine up first: on a re-run the create would be refused for its rack position
	// (checked before the name), which would hide that the machine is simply already there.
	var q struct {
		Machine *struct {
			ID  string
			BMC *struct{ ID string } `json:"bmc"`
		}
	}
	if err := c.do(ctx, `query($n: String!) { machine(name: $n) { id bmc { id } } }`, map[string]any{"n": b.Name}, &q); err != nil {
		return "", false, err
	}
	hasBMC := false
	if q.Machine != nil {
		id, hasBMC = q.Machine.ID, q.Machine.BMC != nil
	} else {
		var out struct {
			CreateMachine struct {
				Machine *struct{ ID string }
				Errors  []domainError
			}
		}
		in := map[string]any{"name": b.Name, "rackID": rackID, "uPosition": u, "uHeight": 1}
		if alive {
			in["alive"] = true
		}
		if identity && b.UUID != "" {
			in["uuid"] = b.UUID
		}
		if err := c.do(ctx, `mutation($in: CreateMachineInput!) { createMachine(input: $in) { machine { id } errors { field code message } } }`,
			map[string]any{"in": in}, &out); err != nil {
			return "", false, err
		}
		if out.CreateMachine.Machine == nil {
			return "", false, fmt.Errorf("create machine: %w", errorsOf(out.CreateMachine.Errors))
		}
		id, created = out.CreateMachine.Machine.ID, true
	}
	if hasBMC {
		return id, created, nil
	}
	var bo struct {
		CreateBMC struct {
			BMC    *struct{ ID string } `json:"bmc"`
			Errors []domainError
		} `json:"createBMC"`
	}
	bin := map[string]any{
		"protocol": strings.ToUpper(b.Protocol), "address": b.Address, "port": b.Port,
		"username": b.Username, "password": b.Password, "machineID": id,
	}
	if b.Scheme != "" {
		bin["scheme"] = b.Scheme
	}
	if err := c.do(ctx, `mutation($in: CreateBMCInput!) { createBMC(input: $in) { bmc { id } errors { field code message } } }`,
		map[string]any{"in": bin}, &bo); err != nil {
		return "", false, err
	}
	if bo.CreateBMC.BMC == nil {
		return "", false, fmt.Errorf("create BMC: %w", errorsOf(bo.CreateBMC.Errors))
	}
	return id, created, nil
}
