package main

// This file provides `prybar sim`: simulated BMCs for development, demos and load tests.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prybar/prybar/provision/fleet"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

const simUsage = `usage: prybar sim <kind> [flags]

kinds:
  redfish    one Redfish BMC serving a DMTF mock-up (--mockup DIR --listen ADDR …)
  fleet      N simulated BMCs (Redfish and IPMI) on 127.0.0.1, registered in a running Prybar
             (--machines N --prybar URL [--redfish-share 0.5] --mockup DIR); with --agents each
             machine its BMC PXE-boots fetches its script from --boot-url (default: --prybar) and
             runs a simulated discovery agent reporting the inventory its BMC reports
  bench      the discover → ready benchmark: starts its own prybar serve (SQLite, temporary),
             a fleet with agents, binds bmc-discover → pxe-discover → agent-inventory →
             discovered-ready on every machine, commits and waits until all are READY; prints wall
             time, node-roles/s and the server's peak RSS (--machines 10000)

redfish and fleet run until interrupted (SIGINT/SIGTERM).
`

func simCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, simUsage)
		return errors.New("sim: no kind given")
	}
	switch args[0] {
	case "redfish":
		// ctx already ends on SIGINT/SIGTERM (main), so Run rather than Main.
		return redfishsim.Run(ctx, args[1:], stdout)
	case "fleet":
		return simFleet(ctx, args[1:], stdout, stderr)
	case "bench":
		return simBench(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, simUsage)
		return nil
	}
	fmt.Fprint(stderr, simUsage)
	return fmt.Errorf("sim: unknown kind %q", args[0])
}

func simFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim fleet", "--machines N [--prybar URL] [--mockup DIR] …")
	var cfg fleet.Config
	fs.IntVar(&cfg.Machines, "machines", 10, "number of simulated machines (one BMC each)")
	fs.IntVar(&cfg.FirstIndex, "first-index", 0, "index of the first machine (fleets in several processes use disjoint ranges)")
	parallel := fs.Int("register-parallelism", 4, "concurrent API requests while registering")
	fs.Float64Var(&cfg.RedfishShare, "redfish-share", 0.5, "share of Redfish BMCs (the rest speak IPMI)")
	fs.StringVar(&cfg.MockupDir, "mockup", "../shared/redfish-mockups/public-rackmount1", "Redfish mock-up every Redfish BMC serves")
	fs.DurationVar(&cfg.PowerDelay, "power-delay", 2*time.Second, "time a power change takes")
	fs.StringVar(&cfg.Username, "user", "admin", "BMC user name")
	fs.StringVar(&cfg.Password, "password", "password", "BMC password")
	fs.StringVar(&cfg.Domain, "domain", "fleet.sim", "machines are named sim-NNNN.<domain>")
	prybar := fs.String("prybar", "", "Prybar base URL to register the machines in (e.g. http://127.0.0.1:8080); empty only runs the BMCs")
	site := fs.String("site", "fleet-sim", "site to register the machines in")
	alive := fs.Bool("alive", false, "register machines as alive (otherwise discovery marks them)")
	token := fs.String("token", "", "API token for registration, if the server requires one")
	every := fs.Duration("stats-every", 30*time.Second, "print fleet statistics this often (0: only at exit)")
	agents := fs.Bool("agents", false, "simulate the machines too: a PXE boot runs a simulated discovery agent")
	bootURL := fs.String("boot-url", "", "Prybar's boot HTTP base URL the simulated machines fetch /boot/ipxe from (default: --prybar)")
	bootDelay := fs.Duration("boot-delay", time.Second, "with --agents: time from power-on to the script fetch, and again to the agent's registration")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if cfg.Machines <= 0 {
		return errors.New("sim fleet: --machines must be positive")
	}
	if *agents {
		u := *bootURL
		if u == "" {
			u = *prybar
		}
		if u == "" {
			return errors.New("sim fleet: --agents needs --boot-url or --prybar")
		}
		cfg.Agents = &fleet.AgentConfig{BootURL: u, BootDelay: *bootDelay}
	}
	f, err := fleet.Start(cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	s := f.Stats()
	fmt.Fprintf(stdout, "started %d simulated BMCs (%d Redfish, %d IPMI) on 127.0.0.1\n", len(f.BMCs), s.Redfish, s.IPMI)
	if *prybar != "" {
		// With agents, each machine's UUID is recorded too, so an agent is matched to its machine
		// even when the BMC reports no NICs (IPMI).
		reg, err := f.Register(ctx, *prybar, fleet.RegisterOptions{Site: *site, Alive: *alive, Token: *token, Identity: *agents, Parallelism: *parallel})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "registered in %s: %d machines created, %d already present (site %s)\n",
			*prybar, reg.Created, len(f.BMCs)-reg.Created, *site)
	}
	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "summary:", f.Stats())
			if *agents {
				fmt.Fprintln(stdout, "summary:", f.AgentStats())
			}
			return nil
		case <-tick:
			fmt.Fprintln(stdout, f.Stats())
			if *agents {
				fmt.Fprintln(stdout, f.AgentStats())
			}
		}
	}
}

func simBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim bench", "[--machines 10000] [--mockup DIR] …")
	var cfg fleet.BenchConfig
	fs.IntVar(&cfg.Machines, "machines", 10000, "number of simulated machines")
	fs.Float64Var(&cfg.RedfishShare, "redfish-share", 0.5, "share of Redfish BMCs (the rest speak IPMI)")
	fs.StringVar(&cfg.MockupDir, "mockup", "../shared/redfish-mockups/public-rackmount1", "Redfish mock-up every Redfish BMC serves")
	fs.DurationVar(&cfg.PowerDelay, "power-delay", time.Second, "time a simulated power change takes")
	fs.DurationVar(&cfg.BootDelay, "boot-delay", time.Second, "simulated PXE boot: power-on → script fetch, and script → agent registration")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Minute, "give up after this long")
	fs.IntVar(&cfg.PerWorker, "per-worker", 5000, "machines per fleet process (prybar sim fleet --agents; each machine costs two file descriptors)")
	fs.StringVar(&cfg.Dir, "dir", "", "keep the database and serve.log here (default: a temporary folder, removed)")
	prybarBin := fs.String("prybar", "", "prybar binary to run as the server (default: this one)")
	var env multiFlag
	fs.Var(&env, "serve-env", "KEY=VALUE added to the server's environment (repeatable), e.g. PRYBAR_CONCURRENCY=1024 or GOGC=50")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *prybarBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*prybarBin = exe
	}
	cfg.Prybar, cfg.Out, cfg.Env = *prybarBin, stdout, env
	res, err := fleet.Bench(ctx, cfg)
	fmt.Fprintln(stdout, "result:", res)
	return err
}
