package redfishsim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"
)

// Main runs the simulator as a command (`prybar sim redfish`) until SIGINT or SIGTERM.
func Main(args []string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, stdout)
}

// Run is Main with the lifetime given by ctx, so it can be embedded and tested.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("redfish", flag.ContinueOnError)
	fl.SetOutput(stdout)
	var cfg Config
	listen := fl.String("listen", "127.0.0.1:8000", "address to listen on")
	fl.StringVar(&cfg.MockupDir, "mockup", "", "Redfish mock-up folder (mirrors /redfish/v1)")
	fl.StringVar(&cfg.Username, "user", "admin", "accepted user name")
	fl.StringVar(&cfg.Password, "password", "password", "accepted password")
	fl.IntVar(&cfg.MaxSessions, "max-sessions", 16, "session table size")
	fl.DurationVar(&cfg.PowerDelay, "power-delay", 200*time.Millisecond, "time a reset takes to change power state")
	fl.Uint64Var(&cfg.Seed, "seed", 1, "fault-injection RNG seed")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if cfg.MockupDir == "" {
		return errors.New("redfishsim: --mockup is required")
	}
	sim, err := New(cfg)
	if err != nil {
		return err
	}
	url, err := sim.Start(*listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "redfish simulator listening on %s (mock-up %s)\n", url, cfg.MockupDir)
	<-ctx.Done()
	return sim.Close()
}
