package graph

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/prybar/prybar/internal/store"
)

// NewHandler returns the GraphQL endpoint: POST/GET queries and mutations, and subscriptions over
// WebSocket (graphql-transport-ws, also the legacy graphql-ws protocol).
func NewHandler(st *store.Store, log *slog.Logger, opts Options) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	res := NewResolver(st, log, opts)
	srv := handler.New(NewExecutableSchema(Config{Resolvers: res, Directives: DirectiveRoot{HasRole: hasRole}}))
	srv.AddTransport(transport.Websocket{
		Implementation: transport.CoderWebsocketImplementation{
			// A browser on another origin must not ride on the operator's session cookie: the
			// upgrade is refused (403) unless Origin is the request's host or allow-listed.
			// Non-browser clients send no Origin and authenticate in connection_init.
			AcceptOptions: websocket.AcceptOptions{OriginPatterns: opts.AllowedOrigins},
		},
		KeepAlivePingInterval: 10 * time.Second,
		InitTimeout:           10 * time.Second,
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			ctx, err := res.auth.WebsocketInit(ctx, p, transport.WithWebsocketCloseCode)
			return ctx, nil, err
		},
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(extension.Introspection{})
	srv.Use(depthLimit{max: MaxDepth})
	srv.Use(&costLimit{})
	srv.AroundRootFields(denyUndecided)
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	// No extension above is a field interceptor (AroundFields), so plain leaf fields may skip
	// graphql.ResolveField (graph/serial.go). Adding field middleware means removing this line.
	res.plainFields = true
	srv.SetErrorPresenter(presentError)
	srv.SetRecoverFunc(func(ctx context.Context, p any) error {
		log.Error("resolver panic", "panic", p)
		return errors.New("internal server error")
	})
	srv.AroundResponses(takeRawData) // first: the outermost, see graph/rawdata.go
	srv.AroundResponses(func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		resp := next(ctx)
		if resp != nil && len(resp.Errors) > 0 {
			log.Debug("graphql errors", "errors", resp.Errors.Error())
		}
		return resp
	})
	return limitBody(withRawData(srv), MaxBodyBytes)
}
