package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/prybar/prybar/internal/domain"
)

// MaxDepth bounds how deeply a query may nest. The deepest legitimate query, the topology
// (sites → racks → machines → nics/disks with their connection wrappers), is 12 levels; a bound
// well above it stops pathological queries (parents → children → parents …) before they run.
const MaxDepth = 24

// depthLimit is a gqlgen extension refusing operations nested deeper than max.
type depthLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = depthLimit{}

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }
func (d depthLimit) MutateOperationContext(_ context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	if rc.Operation == nil {
		return nil
	}
	if depth := selectionDepth(rc.Operation.SelectionSet, rc.Doc.Fragments, 0); depth > d.max {
		return gqlerror.Errorf("query is nested %d levels deep; the limit is %d", depth, d.max)
	}
	return nil
}

// selectionDepth returns the depth of set, following fragments (each at most once per path, so
// a cyclic fragment — which validation rejects anyway — cannot loop).
func selectionDepth(set ast.SelectionSet, frags ast.FragmentDefinitionList, seen int) int {
	if seen > 64 {
		return seen
	}
	deepest := 0
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			d = 1 + selectionDepth(s.SelectionSet, frags, seen+1)
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet, frags, seen)
		case *ast.FragmentSpread:
			if f := frags.ForName(s.Name); f != nil {
				d = selectionDepth(f.SelectionSet, frags, seen+1)
			}
		}
		deepest = max(deepest, d)
	}
	return deepest
}

// MaxBodyBytes bounds a request body. A GraphQL document with its variables is small; refusing
// megabytes before reading them keeps one client from making the server buffer them.
const MaxBodyBytes = 1 << 20

// limitBody answers 413 Request Entity Too Large to a body over max bytes, before GraphQL sees it:
// gqlgen would report the truncated read as a GraphQL error in a 200 answer. A declared
// Content-Length is refused unread; a chunked body is read up to the limit first.
func limitBody(next http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > max {
			tooLarge(w, max)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(w, max)
			return
		} else if err != nil {
			http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter, max int64) {
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	fmt.Fprintf(w, `{"errors":[{"message":"request body is larger than the limit of %d bytes","extensions":{"code":"REQUEST_TOO_LARGE"}}]}`+"\n", max)
}

// presentError gives every top-level error a stable shape: a domain error (e.g. a malformed id in
// an argument) carries extensions.code and extensions.field, the field being the argument or input
// field the error's path ends in. Internal errors keep their message for the log but never leak
// ORM or SQL vocabulary.
func presentError(ctx context.Context, err error) *gqlerror.Error {
	gerr := graphql.DefaultErrorPresenter(ctx, err)
	var de *domain.Error
	if errors.As(err, &de) {
		field := de.Field
		if field == "" {
			for i := len(gerr.Path) - 1; i >= 0; i-- {
				if name, ok := gerr.Path[i].(ast.PathName); ok {
					field = string(name)
					break
				}
			}
		}
		gerr.Message = de.Message
		if field != "" {
			gerr.Message = field + ": " + de.Message
		}
		if gerr.Extensions == nil {
			gerr.Extensions = map[string]any{}
		}
		gerr.Extensions["code"] = de.Code
		gerr.Extensions["field"] = field
		return gerr
	}
	gerr.Message = domain.Clean(gerr.Message)
	return gerr
}
