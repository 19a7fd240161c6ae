// Package oob is the out-of-band executor: the "bmc" executor of the role catalogue. It powers
// machines on, off and through a cycle, sets their next boot device and reads their hardware
// inventory through the machine's BMC, speaking Redfish or IPMI as the BMC record says.
//
// Rules it keeps, and why:
//   - Act only on confirmed state. Every action starts by reading the power state; a state the BMC
//     cannot (or will not) report fails the run. Guessing would turn a flaky BMC into a
//     surprise power cycle of a running machine.
//   - Success means the post-condition was observed: after a power action the executor polls the
//     power state until it matches (bounded by Config.SettleTimeout), because BMCs accept a reset
//     long before the PSU and BIOS follow, and some accept it and do nothing.
//   - One operation per BMC at a time. The scheduler serialises runs by ConcurrencyKey; the
//     executor also holds a per-key lock of its own, so that direct callers (API power buttons,
//     tests, a misconfigured scheduler) cannot overlap operations on one BMC either. BMCs are tiny
//     computers whose session tables and command queues break under concurrent use.
//   - The controller is always closed (Redfish logout), also on error and on timeout: leaked
//     sessions fill the BMC's session table and lock operators out.
//
// Inventory is returned, never written here: Run puts the typed inventory in Result.Private, and
// the annealer calls Commit (executor.Committer) in the transaction that records the run's
// success; see ApplyInventory for the mapping.
package oob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/scheduler/executor"
)

// Name is the executor's name in the role catalogue.
const Name = "bmc"

// Actions, as the role catalogue's `action` attribute spells them.
const (
	ActionInventory   = "inventory"     // read hardware inventory (and power state); record it
	ActionPowerOn     = "power-on"      // power on; no-op when on
	ActionPowerOff    = "power-off"     // hard power off; no-op when off
	ActionPowerSoft   = "power-soft"    // ACPI shutdown request, then wait for off
	ActionPowerCycle  = "power-cycle"   // off then on (power on when off)
	ActionBootDevice  = "boot-device"   // set the boot device, then boot from it (see Run)
	ActionPXEBootOnce = "pxe-boot-once" // alias of boot-device
	ActionResetBMC    = "reset-bmc"     // restart the management controller itself
)

// Output keys. Everything the executor reports sits under these two keys of Result.Output so it
// never shadows a role attribute (the wall is layered over the attributes on the next run).
const (
	OutputBMC       = "bmc"       // map: action, protocol, power, boot_device, boot_persistent, boot_efi…
	OutputInventory = "inventory" // map: see InventoryOutput
)

// ErrUnreachable fails a run whose BMC stopped answering at the network level while the executor
// waited for a power post-condition (Config.MaxUnreachable consecutive failures).
var ErrUnreachable = errors.New("BMC unreachable")

// unreachable reports whether err means the BMC could not be reached at all — as opposed to a BMC
// that answered with an error. It looks at the network error types, so it holds for both
// protocols without knowing their clients' error wrapping.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var op *net.OpError
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &op), errors.As(err, &dns),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

// ErrNoBMC fails a run on a machine without a BMC record.
var ErrNoBMC = errors.New("oob: machine has no BMC")

// Dialer opens a controller for an endpoint. Tests replace it to count or fake controllers.
type Dialer func(ep bmc.Endpoint) (bmc.Controller, error)

// Config configures the executor. The zero value works (no store: inventory is only reported).
type Config struct {
	// RunTimeout is what Timeout reports (default 2m); the scheduler bounds each run with it.
	RunTimeout time.Duration
	// SettleTimeout bounds the wait for a power post-condition (default 60s).
	SettleTimeout time.Duration
	// PollInterval is the power-state polling period (default 1s).
	PollInterval time.Duration
	// MaxUnreachable is how many consecutive power-state reads that fail to reach the BMC at all
	// (connection refused or reset, dial or read timeout) end the wait for a power
	// post-condition with ErrUnreachable, instead of polling a dead BMC until SettleTimeout
	// (default 5). Errors the BMC answers with (5xx, unreadable state) do not count: a BMC
	// mid-transition answers badly and then recovers.
	MaxUnreachable int
	// CycleOffWindow is how long, after a power cycle, the executor looks for the off phase
	// before accepting "on" as the end state (default 10s). See waitCycle.
	CycleOffWindow time.Duration
	// Dial opens controllers; the default picks redfish.New or ipmi.New by protocol with
	// RedfishOptions / IPMIOptions.
	Dial           Dialer
	RedfishOptions []redfish.Option
	IPMIOptions    []ipmi.Option
	Log            *slog.Logger
}

// KeyStats are the executor's counters for one BMC (concurrency key).
type KeyStats struct {
	Runs       int64 // operations started on the BMC
	Active     int64 // operations in progress now
	PeakActive int64 // most operations ever in progress at once (1 unless the lock is broken)
	Waits      int64 // operations that had to wait for another one on the same BMC
}

type keyState struct {
	sem                            chan struct{} // capacity 1: the per-BMC lock, waitable with a context
	runs, active, peakActive, wait atomic.Int64
}

// Executor is the "bmc" executor. Create it with New; it is safe for concurrent use.
type Executor struct {
	cfg Config

	mu   sync.Mutex
	keys map[string]*keyState
}

var (
	_ executor.Executor  = (*Executor)(nil)
	_ executor.Verifier  = (*Executor)(nil)
	_ executor.Committer = (*Executor)(nil)
)

// New returns the executor.
func New(cfg Config) *Executor {
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = 2 * time.Minute
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = 60 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxUnreachable <= 0 {
		cfg.MaxUnreachable = 5
	}
	if cfg.CycleOffWindow <= 0 {
		cfg.CycleOffWindow = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	e := &Executor{cfg: cfg, keys: map[string]*keyState{}}
	if e.cfg.Dial == nil {
		e.cfg.Dial = e.dial
	}
	return e
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return Name }

// Idempotent implements executor.Executor. It is false because power-cycle and boot-device
// reboot the machine: re-running one after a crash would reboot it again. The idempotent actions
// (inventory, power-on, power-off, power-soft) are recovered through Applied instead.
func (e *Executor) Idempotent() bool { return false }

// IdempotentAction reports whether running action twice is harmless.
func IdempotentAction(action string) bool {
	switch action {
	case ActionInventory, ActionPowerOn, ActionPowerOff, ActionPowerSoft:
		return true
	}
	return false
}

// Timeout implements executor.Executor.
func (e *Executor) Timeout() time.Duration { return e.cfg.RunTimeout }

// ConcurrencyKey implements executor.Executor: the BMC's address:port, so one operation at a time
// reaches one BMC. Machines without a BMC get their own key (their run fails at once anyway).
func (e *Executor) ConcurrencyKey(in executor.Input) string {
	ep, err := endpointOf(in)
	if err != nil {
		return fmt.Sprintf("bmc:none:machine-%d", in.Machine.ID)
	}
	return "bmc:" + ep.Key()
}

// Stats returns the counters of one BMC, keyed like bmc.Endpoint.Key ("address:port").
func (e *Executor) Stats(key string) KeyStats {
	e.mu.Lock()
	ks := e.keys["bmc:"+key]
	e.mu.Unlock()
	if ks == nil {
		return KeyStats{}
	}
	return ks.stats()
}

// AllStats returns the counters of every BMC the executor has touched.
func (e *Executor) AllStats() map[string]KeyStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]KeyStats, len(e.keys))
	for k, ks := range e.keys {
		out[strings.TrimPrefix(k, "bmc:")] = ks.stats()
	}
	return out
}

// PeakActive is the largest PeakActive over all BMCs: 1 means no two operations ever overlapped
// on one BMC.
func (e *Executor) PeakActive() int64 {
	var p int64
	for _, s := range e.AllStats() {
		p = max(p, s.PeakActive)
	}
	return p
}

func (ks *keyState) stats() KeyStats {
	return KeyStats{Runs: ks.runs.Load(), Active: ks.active.Load(), PeakActive: ks.peakActive.Load(), Waits: ks.wait.Load()}
}

// lock takes the per-BMC lock, honouring ctx while waiting.
func (e *Executor) lock(ctx context.Context, key string) (unlock func(), err error) {
	e.mu.Lock()
	ks := e.keys[key]
	if ks == nil {
		ks = &keyState{sem: make(chan struct{}, 1)}
		e.keys[key] = ks
	}
	e.mu.Unlock()
	select {
	case ks.sem <- struct{}{}:
	default:
		ks.wait.Add(1)
		select {
		case ks.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("oob: waiting for another operation on BMC %s: %w", strings.TrimPrefix(key, "bmc:"), ctx.Err())
		}
	}
	ks.runs.Add(1)
	n := ks.active.Add(1)
	for {
		p := ks.peakActive.Load()
		if n <= p || ks.peakActive.CompareAndSwap(p, n) {
			break
		}
	}
	return func() {
		ks.active.Add(-1)
		<-ks.sem
	}, nil
}

// endpointOf builds the BMC endpoint of the input's machine.
func endpointOf(in executor.Input) (bmc.Endpoint, error) {
	b := in.Machine.BMC
	if b == nil {
		return bmc.Endpoint{}, fmt.Errorf("%w: machine %q (id %d) has no BMC record; add one before running out-of-band roles", ErrNoBMC, in.Machine.Name, in.Machine.ID)
	}
	proto := strings.ToLower(b.Protocol)
	if proto != "redfish" && proto != "ipmi" {
		return bmc.Endpoint{}, fmt.Errorf("oob: machine %q: unknown BMC protocol %q (want redfish or ipmi)", in.Machine.Name, b.Protocol)
	}
	if b.Address == "" {
		return bmc.Endpoint{}, fmt.Errorf("oob: machine %q: BMC has no address", in.Machine.Name)
	}
	port := b.Port
	if port == 0 {
		// Normalise so the concurrency key is the same whether or not the record spells the port.
		switch {
		case proto == "ipmi":
			port = ipmi.DefaultPort
		case strings.EqualFold(b.Scheme, "http"):
			port = 80
		default:
			port = 443
		}
	}
	ep := *b
	ep.Protocol, ep.Port = proto, port
	return ep, nil
}

func (e *Executor) dial(ep bmc.Endpoint) (bmc.Controller, error) {
	switch ep.Protocol {
	case "redfish":
		return redfish.New(ep, e.cfg.RedfishOptions...), nil
	case "ipmi":
		return ipmi.New(ep, e.cfg.IPMIOptions...), nil
	}
	return nil, fmt.Errorf("oob: unknown BMC protocol %q", ep.Protocol)
}

// request is a parsed input.
type request struct {
	action     string
	device     bmc.BootDevice
	persistent bool
	efi        bool
	mode       bmc.BootMode // boot_mode: "" keeps the BMC's mode
	boot       bool         // boot-device: power on / cycle afterwards
}

func parseRequest(attrs map[string]any) (request, error) {
	r := request{device: bmc.BootPXE, boot: true}
	a, _ := attrs["action"].(string)
	switch a {
	case ActionInventory, ActionPowerOn, ActionPowerOff, ActionPowerSoft, ActionPowerCycle, ActionBootDevice, ActionResetBMC:
		r.action = a
	case ActionPXEBootOnce:
		r.action = ActionBootDevice
	case "":
		return r, errors.New("oob: attribute action is missing (want inventory, power-on, power-off, power-soft, power-cycle, boot-device or reset-bmc)")
	default:
		return r, fmt.Errorf("oob: unknown action %q (want inventory, power-on, power-off, power-soft, power-cycle, boot-device or reset-bmc)", a)
	}
	if v, ok := attrs["device"]; ok && v != nil {
		s, _ := v.(string)
		d, err := bmc.ParseBootDevice(strings.ToLower(s))
		if err != nil {
			return r, fmt.Errorf("oob: attribute device: %w", err)
		}
		r.device = d
	}
	var err error
	if r.persistent, err = boolAttr(attrs, "persistent", false); err != nil {
		return r, err
	}
	if r.efi, err = boolAttr(attrs, "efi", false); err != nil {
		return r, err
	}
	if v, ok := attrs["boot_mode"]; ok && v != nil {
		// efi: false cannot ask for legacy boot (it is every role's default); boot_mode can.
		switch s, _ := v.(string); strings.ToLower(s) {
		case "", "keep":
		case "uefi":
			r.mode = bmc.BootModeUEFI
		case "legacy":
			r.mode = bmc.BootModeLegacy
		default:
			return r, fmt.Errorf("oob: attribute boot_mode %v: want keep, uefi or legacy", v)
		}
	}
	if r.boot, err = boolAttr(attrs, "boot", true); err != nil {
		return r, err
	}
	return r, nil
}

func boolAttr(attrs map[string]any, k string, def bool) (bool, error) {
	v, ok := attrs[k]
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("oob: attribute %s must be a boolean, got %T", k, v)
	}
	return b, nil
}

// Run implements executor.Executor. Actions:
//
//   - inventory: read the hardware inventory (Redfish; IPMI reports power only) and, with a
//     store, write it onto the machine and mark it alive.
//   - power-on / power-off / power-soft: no command when already there; otherwise command and
//     poll until the state is reached.
//   - power-cycle: cycle a machine that is on (and see the off phase where it shows), power on
//     one that is off.
//   - boot-device (alias pxe-boot-once): set `device` (default pxe; `persistent`, `efi`), which
//     the clients verify by reading it back, then — unless `boot` is false — power on a machine
//     that is off or cycle one that is on, so it boots from the device now.
//   - reset-bmc: restart the BMC.
func (e *Executor) Run(ctx context.Context, in executor.Input) (res executor.Result, err error) {
	var log strings.Builder
	logf := func(format string, args ...any) {
		fmt.Fprintf(&log, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
	}
	defer func() { res.Log = log.String() }()

	req, err := parseRequest(in.Attrs)
	if err != nil {
		return res, err
	}
	ep, err := endpointOf(in)
	if err != nil {
		return res, err
	}
	unlock, err := e.lock(ctx, "bmc:"+ep.Key())
	if err != nil {
		return res, err
	}
	defer unlock()

	ctl, err := e.cfg.Dial(ep)
	if err != nil {
		return res, err
	}
	defer func() {
		// Close with a context that outlives a cancelled run: the logout must still happen.
		if cerr := ctl.Close(context.WithoutCancel(ctx)); cerr != nil {
			logf("close: %v", cerr)
			if err == nil {
				err = cerr
			}
		}
	}()
	logf("%s via %s at %s (machine %s, run %d)", req.action, ep.Protocol, ep.Key(), in.Machine.Name, in.RunID)
	out := map[string]any{"action": req.action, "protocol": ep.Protocol, "address": ep.Key()}
	res.Output = map[string]any{OutputBMC: out}

	switch req.action {
	case ActionInventory:
		err = e.inventory(ctx, ctl, out, res.Output, &res.Private, logf)
	case ActionPowerOn:
		err = e.powerTo(ctx, ctl, bmc.ActionOn, bmc.PowerOn, out, logf)
	case ActionPowerOff:
		err = e.powerTo(ctx, ctl, bmc.ActionOff, bmc.PowerOff, out, logf)
	case ActionPowerSoft:
		err = e.powerTo(ctx, ctl, bmc.ActionSoft, bmc.PowerOff, out, logf)
	case ActionPowerCycle:
		err = e.cycle(ctx, ctl, out, logf)
	case ActionBootDevice:
		err = e.bootDevice(ctx, ctl, req, out, logf)
	case ActionResetBMC:
		if err = executor.Fence(ctx); err != nil {
			break
		}
		if err = ctl.ResetBMC(ctx); err == nil {
			logf("BMC reset requested")
			out["bmc_reset"] = true
		}
	}
	if err != nil {
		logf("failed: %v", err)
		return res, err
	}
	return res, nil
}

// state reads the confirmed power state; anything else is an error.
func state(ctx context.Context, ctl bmc.Controller) (bmc.PowerState, error) {
	st, err := ctl.PowerState(ctx)
	if err != nil {
		return "", fmt.Errorf("oob: read power state (refusing to act on an unknown state): %w", err)
	}
	if st != bmc.PowerOn && st != bmc.PowerOff {
		return "", fmt.Errorf("oob: power state %q: %w", st, bmc.ErrUnknownPowerState)
	}
	return st, nil
}

func (e *Executor) powerTo(ctx context.Context, ctl bmc.Controller, act bmc.PowerAction, want bmc.PowerState, out map[string]any, logf func(string, ...any)) error {
	cur, err := state(ctx, ctl)
	if err != nil {
		return err
	}
	if cur == want {
		logf("already %s; nothing to do", want)
		out["power"] = string(cur)
		out["changed"] = false
		return nil
	}
	if err := executor.Fence(ctx); err != nil {
		return err
	}
	if err := ctl.Power(ctx, act); err != nil {
		return fmt.Errorf("oob: power %s: %w", act, err)
	}
	logf("power %s sent (was %s); waiting for %s", act, cur, want)
	if err := e.waitFor(ctx, ctl, want); err != nil {
		return err
	}
	logf("confirmed %s", want)
	out["power"] = string(want)
	out["changed"] = true
	return nil
}

// waitFor polls until the BMC confirms want. Unreadable states while waiting are tolerated
// (BMCs report transitional or no state mid-transition) until the settle timeout.
func (e *Executor) waitFor(ctx context.Context, ctl bmc.Controller, want bmc.PowerState) error {
	_, err := e.poll(ctx, ctl, want, e.cfg.SettleTimeout)
	return err
}

func (e *Executor) poll(ctx context.Context, ctl bmc.Controller, want bmc.PowerState, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	var last bmc.PowerState
	var lastErr error
	lost := 0 // consecutive reads that did not reach the BMC
	for {
		st, err := ctl.PowerState(ctx)
		if err == nil && st == want {
			return true, nil
		}
		last, lastErr = st, err
		if ctx.Err() != nil {
			return false, fmt.Errorf("oob: waiting for power %s: %w", want, ctx.Err())
		}
		if unreachable(err) {
			if lost++; lost >= e.cfg.MaxUnreachable {
				return false, fmt.Errorf("oob: %w: %d consecutive power-state reads failed while waiting for power %s (last: %v)", ErrUnreachable, lost, want, err)
			}
		} else {
			lost = 0
		}
		if !time.Now().Add(e.cfg.PollInterval).Before(deadline) {
			if lastErr != nil {
				return false, fmt.Errorf("oob: power not %s after %s (last read failed: %w)", want, d, lastErr)
			}
			return false, fmt.Errorf("oob: power not %s after %s (BMC still reports %q)", want, d, last)
		}
		t := time.NewTimer(e.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("oob: waiting for power %s: %w", want, ctx.Err())
		case <-t.C:
		}
	}
}

// cycle power-cycles a machine that is on; a machine that is off is powered on (a cycle's end
// state), because many BMCs refuse a cycle of an off machine.
func (e *Executor) cycle(ctx context.Context, ctl bmc.Controller, out map[string]any, logf func(string, ...any)) error {
	cur, err := state(ctx, ctl)
	if err != nil {
		return err
	}
	if cur == bmc.PowerOff {
		logf("machine is off; powering on instead of cycling")
		return e.powerTo(ctx, ctl, bmc.ActionOn, bmc.PowerOn, out, logf)
	}
	if err := executor.Fence(ctx); err != nil {
		return err
	}
	if err := ctl.Power(ctx, bmc.ActionCycle); err != nil {
		return fmt.Errorf("oob: power cycle: %w", err)
	}
	logf("power cycle sent")
	return e.waitCycle(ctx, ctl, out, logf)
}

// waitCycle waits for the end of a power cycle. Right after the command the BMC still reports
// "on" (the off phase has not begun), so polling for "on" alone would return before the machine
// even went down, and the next operation would find it off. The executor therefore first looks
// for the off phase for up to CycleOffWindow; BMCs whose off phase is shorter than the poll
// interval never show it, and then "on" at the end of the window is accepted.
func (e *Executor) waitCycle(ctx context.Context, ctl bmc.Controller, out map[string]any, logf func(string, ...any)) error {
	sawOff, _ := e.poll(ctx, ctl, bmc.PowerOff, e.cfg.CycleOffWindow)
	if ctx.Err() != nil {
		return fmt.Errorf("oob: waiting for power cycle: %w", ctx.Err())
	}
	if sawOff {
		logf("off phase seen")
	} else {
		logf("off phase not seen within %s", e.cfg.CycleOffWindow)
	}
	if err := e.waitFor(ctx, ctl, bmc.PowerOn); err != nil {
		return err
	}
	logf("confirmed on")
	out["power"] = string(bmc.PowerOn)
	out["changed"] = true
	out["cycled"] = true
	out["off_phase_seen"] = sawOff
	return nil
}

func (e *Executor) bootDevice(ctx context.Context, ctl bmc.Controller, req request, out map[string]any, logf func(string, ...any)) error {
	// Read the state first: a BMC that cannot report power is not one to reboot a machine through.
	cur, err := state(ctx, ctl)
	if err != nil {
		return err
	}
	opts := bmc.BootOptions{Persistent: req.persistent, EFI: req.efi, Mode: req.mode}
	if err := executor.Fence(ctx); err != nil {
		return err
	}
	if err := ctl.SetBootDevice(ctx, req.device, opts); err != nil {
		if errors.Is(err, redfish.ErrOverrideIgnored) {
			return fmt.Errorf("oob: the BMC accepted the boot override to %s but it did not take (read back unchanged): %w", req.device, err)
		}
		return fmt.Errorf("oob: set boot device %s: %w", req.device, err)
	}
	logf("boot device %s set and verified (persistent=%t efi=%t)", req.device, req.persistent, req.efi)
	out["boot_device"] = string(req.device)
	out["boot_persistent"] = req.persistent
	out["boot_efi"] = req.efi
	if !req.boot {
		out["power"] = string(cur)
		return nil
	}
	if cur == bmc.PowerOff {
		return e.powerTo(ctx, ctl, bmc.ActionOn, bmc.PowerOn, out, logf)
	}
	if err := executor.Fence(ctx); err != nil {
		return err
	}
	if err := ctl.Power(ctx, bmc.ActionCycle); err != nil {
		return fmt.Errorf("oob: power cycle to boot from %s: %w", req.device, err)
	}
	logf("power cycle sent to boot from %s", req.device)
	return e.waitCycle(ctx, ctl, out, logf)
}

// Applied implements executor.Verifier for runs interrupted by a crash. Idempotent actions are
// checked (power-on/off/soft: is the state there?) or re-queued (inventory: reading twice is
// harmless). For power-cycle, boot-device and reset-bmc the effect cannot be told from the BMC
// afterwards (an on machine may or may not have rebooted), so Applied returns an error and the
// node-role is left for an operator rather than rebooted a second time.
func (e *Executor) Applied(ctx context.Context, in executor.Input) (bool, map[string]any, error) {
	req, err := parseRequest(in.Attrs)
	if err != nil {
		return false, nil, err
	}
	switch req.action {
	case ActionInventory:
		// Reading is harmless: re-queue, and the re-run records the inventory with its success.
		return false, nil, nil
	case ActionPowerOn, ActionPowerOff, ActionPowerSoft:
		want := bmc.PowerOff
		if req.action == ActionPowerOn {
			want = bmc.PowerOn
		}
		ep, err := endpointOf(in)
		if err != nil {
			return false, nil, err
		}
		unlock, err := e.lock(ctx, "bmc:"+ep.Key())
		if err != nil {
			return false, nil, err
		}
		defer unlock()
		ctl, err := e.cfg.Dial(ep)
		if err != nil {
			return false, nil, err
		}
		defer ctl.Close(context.WithoutCancel(ctx))
		cur, err := state(ctx, ctl)
		if err != nil {
			return false, nil, err
		}
		if cur != want {
			return false, nil, nil
		}
		return true, map[string]any{OutputBMC: map[string]any{"action": req.action, "protocol": ep.Protocol, "address": ep.Key(), "power": string(cur)}}, nil
	}
	return false, nil, fmt.Errorf("oob: cannot tell whether an interrupted %s took effect; an operator must check the machine and retry", req.action)
}

// OutOfBand implements executor.OutOfBand: BMC work does not need the machine to be alive.
func (e *Executor) OutOfBand() bool { return true }
