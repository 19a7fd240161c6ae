package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
)

// marshalSliceSerial is graphql.MarshalSliceConcurrently without the goroutines: `make generate`
// (internal/gqlgenerate) points the generated executor at it. Each element gets its own
// FieldContext with its index and a panic in one element is reported and nulls that element, as in
// gqlgen's version (without a worker limit, which one worker makes irrelevant).
func marshalSliceSerial(
	ctx context.Context,
	length int,
	_ int64,
	omitPanicHandler bool,
	marshalElement func(ctx context.Context, i int) graphql.Marshaler,
) graphql.Array {
	ret := make(graphql.Array, length)
	for i := range length {
		// A client that went away (or a cancelled request) stops the walk here, within one
		// element, instead of after the whole result has been built for nobody.
		if i%64 == 0 && ctx.Err() != nil {
			for j := i; j < length; j++ {
				ret[j] = graphql.Null
			}
			return ret
		}
		fc := &graphql.FieldContext{Index: &i}
		childCtx := graphql.WithFieldContext(ctx, fc)
		ret[i] = marshalOne(childCtx, i, omitPanicHandler, marshalElement)
	}
	return ret
}

func marshalOne(
	ctx context.Context,
	i int,
	omitPanicHandler bool,
	marshalElement func(ctx context.Context, i int) graphql.Marshaler,
) (m graphql.Marshaler) {
	if !omitPanicHandler {
		defer func() {
			if r := recover(); r != nil {
				graphql.AddError(ctx, graphql.Recover(ctx, r))
				m = graphql.Null
			}
		}()
	}
	return marshalElement(ctx, i)
}
