// Package ent is Prybar's generated data layer (entgo.io/ent); the hand-written schema is in
// ent/schema. Regenerate with `make generate`.
package ent
