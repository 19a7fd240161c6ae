package main

// This file wires the annealer (scheduler/) into `prybar serve` and provides `prybar roles`.

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/prybar/prybar/internal/store"
)

// startScheduler starts the annealer for st in the background; the returned function stops it and
// waits. (Filled in by the annealer work.)
func startScheduler(ctx context.Context, st *store.Store, log *slog.Logger) (stop func(), err error) {
	return func() {}, nil
}

func rolesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("roles: not implemented yet")
}
