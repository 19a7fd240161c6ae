// Package graph is Prybar's GraphQL API: the schema (ent.graphqls generated from ent, the rest
// hand-written), thin resolvers over ent and the domain packages, and the HTTP/WebSocket server.
package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/graph/model"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/dhcp"
	"github.com/prybar/prybar/provision/ipxe"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/scheduler"
)

// Resolver is the root resolver. Queries read through client; every write goes through
// store.Tx so it is atomic with its events.
type Resolver struct {
	store    *store.Store
	client   *ent.Client
	log      *slog.Logger
	annealer *scheduler.Annealer
	ops      Operations
	// redfishOpts configure the Redfish clients of queries that ask a BMC (bmcSystems).
	redfishOpts []redfish.Option
	boot        *ipxe.Handler
	dhcp        *dhcp.Server
	auth        *auth.Service
	// plainFields lets the executor skip graphql.ResolveField for plain leaf fields; set by
	// NewHandler only, see graph/serial.go.
	plainFields bool
}

// Options wires the optional parts of the API: without them the corresponding mutations answer
// with an UNAVAILABLE domain error.
type Options struct {
	Annealer   *scheduler.Annealer
	Operations Operations
	// RedfishOptions configure the Redfish clients of queries that ask a BMC (e.g. the session
	// journal, so their sessions are logged out after a crash too).
	RedfishOptions []redfish.Option
	// Boot renders bootScript previews (its backend and base URL; its token key is not used).
	Boot *ipxe.Handler
	// DHCP is the running DHCP server, for the dhcp status query; nil when off.
	DHCP *dhcp.Server
	// Auth manages users and tokens and authenticates WebSocket connections; nil: one over the
	// store (the HTTP layer passes its own, so revocations reach its connections at once).
	Auth *auth.Service
	// AllowedOrigins are the browser origins, besides the request's own host, allowed to open a
	// WebSocket (coder/websocket origin patterns: "host:port" or "https://host").
	AllowedOrigins []string
}

// Operations starts tracked ad-hoc operations on machines (power, boot device).
type Operations interface {
	// Start records the operation and runs it in the background; progress and result are
	// written to the Operation (and so arrive as events).
	Start(ctx context.Context, machineID int, action string, params map[string]any) (*ent.Operation, error)
}

// NewResolver returns the root resolver over st.
func NewResolver(st *store.Store, log *slog.Logger, opts Options) *Resolver {
	if log == nil {
		log = slog.Default()
	}
	if opts.Auth == nil {
		opts.Auth = auth.New(st, log)
	}
	return &Resolver{store: st, client: st.Client, log: log, annealer: opts.Annealer, ops: opts.Operations, redfishOpts: opts.RedfishOptions, boot: opts.Boot, dhcp: opts.DHCP, auth: opts.Auth}
}

func (r *Resolver) startOperation(ctx context.Context, machineID int, action string, params map[string]any) (*model.OperationPayload, error) {
	if r.ops == nil {
		return &model.OperationPayload{Errors: []*domain.Error{domain.Errorf("", domain.Unavailable, "out-of-band operations are not enabled in this server")}}, nil
	}
	op, err := r.ops.Start(ctx, machineID, action, params)
	errs, err := payloadErrors(err)
	if op != nil && len(errs) == 0 {
		op = detach(op, errs)
	}
	return &model.OperationPayload{Operation: op, Errors: errs}, err
}

// unwrapper is every ent entity: Unwrap detaches it from its (now finished) transaction so the
// response's nested fields load through the plain client.
type unwrapper[T any] interface{ Unwrap() T }

// write runs fn in one transaction. A domain error (or an ent validation / constraint / not-found
// error) rolls everything back and is returned as payload errors; other errors are internal.
func write[T unwrapper[T]](ctx context.Context, r *Resolver, fn func(ctx context.Context, tx *ent.Tx) (T, error)) (T, []*domain.Error, error) {
	var out T
	err := r.store.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		v, err := fn(ctx, tx)
		out = v
		return err
	})
	var zero T
	if de, ok := domain.As(err); ok {
		return zero, []*domain.Error{de}, nil
	}
	if err != nil {
		return zero, nil, err
	}
	return out.Unwrap(), []*domain.Error{}, nil
}

func (r *Resolver) delete(ctx context.Context, id int, fn func(ctx context.Context, tx *ent.Tx, id int) error) (*model.DeletePayload, error) {
	err := r.store.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error { return fn(ctx, tx, id) })
	if de, ok := domain.As(err); ok {
		return &model.DeletePayload{Errors: []*domain.Error{de}}, nil
	}
	if err != nil {
		return nil, err
	}
	return &model.DeletePayload{DeletedID: &id, Errors: []*domain.Error{}}, nil
}

func (r *Resolver) eventPage(ctx context.Context, after, first *int, filter *model.EventFilter) (*model.EventPage, error) {
	n := deref(first)
	if n <= 0 || n > events.MaxPage {
		n = events.MaxPage
	}
	if err := resumeError(ctx, events.CheckResume(ctx, r.client, int64(deref(after)))); err != nil {
		return nil, err
	}
	evs, err := events.Page(ctx, r.client, int64(deref(after)), n+1, eventFilter(filter))
	if err != nil {
		return nil, err
	}
	page := &model.EventPage{LastSeq: deref(after)}
	if len(evs) > n {
		evs, page.HasMore = evs[:n], true
	}
	page.Events = evs
	if len(evs) > 0 {
		page.LastSeq = int(evs[len(evs)-1].Seq)
	}
	return page, nil
}

// resumeError turns events.ResyncRequiredError into a GraphQL error carrying its extensions
// (code RESYNC_REQUIRED, oldestSeq), so clients can switch on it.
func resumeError(ctx context.Context, err error) error {
	var rr *events.ResyncRequiredError
	if errors.As(err, &rr) {
		return &gqlerror.Error{Err: err, Message: err.Error(), Path: graphql.GetPath(ctx), Extensions: rr.Extensions()}
	}
	return err
}

func eventFilter(f *model.EventFilter) events.Filter {
	if f == nil {
		return events.Filter{}
	}
	return events.Filter{Kinds: f.Kinds, SiteIDs: f.SiteIDs, RackIDs: f.RackIDs, MachineIDs: f.MachineIDs}
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// orNil turns "not found" into a null result for lookups by natural key.
func orNil[T any](v *T, err error) (*T, error) {
	if ent.IsNotFound(err) {
		return nil, nil
	}
	return v, err
}
