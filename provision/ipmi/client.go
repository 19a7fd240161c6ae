// Package ipmi is Prybar's IPMI v2.0 (RMCP+, "lanplus") BMC client. It implements bmc.Controller
// on top of github.com/bougou/go-ipmi so that executors can drive IPMI-only machines exactly like
// Redfish ones.
//
// Design notes:
//   - The session is opened lazily on the first call and kept until Close, because an RMCP+
//     handshake costs four round trips and BMCs have few session slots (often 4 to 8): opening
//     one per command would both be slow and starve other consoles.
//   - Every attempt of a call (handshake included) is bounded by a timeout; timeouts and
//     transport errors drop the session and are retried with exponential backoff, a bounded
//     number of times. A BMC that answers with a completion code is alive and has decided,
//     so such errors are returned at once (except "busy" codes).
//   - Non-idempotent actions (power cycle, hard reset, BMC reset) are never re-issued once the
//     request may have reached the BMC: cycling a machine twice because an answer was lost is
//     worse than reporting an unknown outcome. go-ipmi's own datagram resends are disabled
//     for the same reason (see connectLocked).
//   - Calls on one Client are serialised; the executor already runs one operation per BMC.
package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	goipmi "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/prybar/prybar/provision/bmc"
)

var _ bmc.Controller = (*Client)(nil)

// Client talks to one BMC over RMCP+. Create it with New; the zero value is not usable.
type Client struct {
	ep   bmc.Endpoint
	addr string
	cfg  config

	mu sync.Mutex
	gc *goipmi.Client // open session, nil when none
}

// New returns a client for ep. It does not touch the network: the session is opened by the
// first call. A Port of 0 means 623.
func New(ep bmc.Endpoint, opts ...Option) *Client {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if ep.Port == 0 {
		ep.Port = DefaultPort
	}
	return &Client{
		ep:   ep,
		addr: net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port)),
		cfg:  cfg,
	}
}

// Address returns host:port of the BMC, as used in error messages.
func (c *Client) Address() string { return c.addr }

// PowerState reads Get Chassis Status. Any failure is reported as bmc.ErrUnknownPowerState
// (the cause stays reachable through errors.Is/As), because callers must not act on a guess.
func (c *Client) PowerState(ctx context.Context) (bmc.PowerState, error) {
	var on bool
	err := c.do(ctx, "power state", true, func(ctx context.Context, gc *goipmi.Client) error {
		st, err := gc.GetChassisStatus(ctx)
		if err != nil {
			return err
		}
		on = st.PowerIsOn
		return nil
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Err = &unknownPower{sentinel: bmc.ErrUnknownPowerState, cause: e.Err}
			return "", e
		}
		return "", err
	}
	if on {
		return bmc.PowerOn, nil
	}
	return bmc.PowerOff, nil
}

// Power sends Chassis Control. It does not wait for the new state (callers poll PowerState).
// "soft" is the ACPI soft-shutdown request; the OS may ignore it.
func (c *Client) Power(ctx context.Context, action bmc.PowerAction) error {
	var (
		ctl        chassis.ChassisControl
		idempotent bool
	)
	switch action {
	case bmc.ActionOn:
		ctl, idempotent = chassis.ChassisControlPowerUp, true
	case bmc.ActionOff:
		ctl, idempotent = chassis.ChassisControlPowerDown, true
	case bmc.ActionSoft:
		// A repeated ACPI request while the OS is already shutting down is harmless.
		ctl, idempotent = chassis.ChassisControlSoftShutdown, true
	case bmc.ActionCycle:
		ctl = chassis.ChassisControlPowerCycle
	case bmc.ActionReset:
		ctl = chassis.ChassisControlHardReset
	default:
		if _, err := bmc.ParsePowerAction(string(action)); err != nil {
			return &Error{Addr: c.addr, Op: "power", Err: err}
		}
		return &Error{Addr: c.addr, Op: "power", Err: fmt.Errorf("unsupported action %q", action)}
	}
	return c.do(ctx, "power "+string(action), idempotent, func(ctx context.Context, gc *goipmi.Client) error {
		_, err := gc.ChassisControl(ctx, ctl)
		return err
	})
}

// SetBootDevice writes the boot flags (Set System Boot Options, parameter 5) inside a
// set-in-progress bracket when the BMC supports one, then reads parameter 5 back and checks the
// device selector. The BMC clears a one-time override on the next boot and, per the IPMI spec,
// also about 60 s after it was set unless a Chassis Control follows: set the device right
// before cycling power.
func (c *Client) SetBootDevice(ctx context.Context, dev bmc.BootDevice, opts bmc.BootOptions) error {
	sel, err := selectorFor(dev)
	if err != nil {
		return &Error{Addr: c.addr, Op: "set boot device", Err: err}
	}
	op := "set boot device " + string(dev)
	flags := &types.BootOptionParam_BootFlags{
		BootFlagsValid:     true,
		Persist:            opts.Persistent,
		BootDeviceSelector: sel,
	}
	switch m := opts.WantMode(); m {
	case bmc.BootModeUEFI:
		flags.BIOSBootType = true
	case bmc.BootModeLegacy, bmc.BootModeKeep:
	default:
		return &Error{Addr: c.addr, Op: op, Err: fmt.Errorf("unknown boot mode %q (want uefi or legacy)", m)}
	}
	return c.do(ctx, op, true, func(ctx context.Context, gc *goipmi.Client) error {
		if opts.WantMode() == bmc.BootModeKeep {
			// IPMI boot flags always carry a BIOS boot type bit. Keep the one of the override in
			// force, so a UEFI machine is not flipped to legacy by a caller that did not ask; with
			// no valid override there is nothing to keep and the bit stays legacy, as before.
			cur := &types.BootOptionParam_BootFlags{}
			if err := gc.GetSystemBootOptionsParamFor(ctx, cur); err == nil && cur.BootFlagsValid {
				flags.BIOSBootType = cur.BIOSBootType
			} else if _, answered := types.IsResponseError(err); err != nil && !answered {
				return fmt.Errorf("read boot flags: %w", err)
			}
		}
		// Set-in-progress is optional (spec 28.13) and implemented unevenly: BMCs without it
		// answer 80h, ipmi_sim answers CCh. Like ipmitool, any completion code here only
		// means "no lock to take"; a transport error still fails the attempt.
		locked := true
		if err := setInProgress(ctx, gc, types.SetInProgress_SetInProgress); err != nil {
			if _, answered := types.IsResponseError(err); !answered {
				return fmt.Errorf("set in progress: %w", err)
			}
			locked = false
		}
		err := setParam(ctx, gc, flags)
		if locked {
			// Always release the lock, also after a failed write, or the next console
			// (and our retry) is refused with 81h.
			if cerr := setInProgress(ctx, gc, types.SetInProgress_SetComplete); cerr != nil && err == nil {
				err = fmt.Errorf("set complete: %w", cerr)
			}
		}
		if err != nil {
			return fmt.Errorf("write boot flags: %w", err)
		}
		if !c.cfg.verifyBoot {
			return nil
		}
		got := &types.BootOptionParam_BootFlags{}
		if err := gc.GetSystemBootOptionsParamFor(ctx, got); err != nil {
			if isCC(err, types.CodeParameterNotSupported) {
				return nil // write-only boot flags: nothing to verify against
			}
			return fmt.Errorf("read back boot flags: %w", err)
		}
		// Only the device selector is compared: ipmi_sim and several vendor BMCs do not echo
		// the valid, persistent or EFI bits, and a mismatch there does not change the device.
		if !sameDevice(got.BootDeviceSelector, sel) {
			return fmt.Errorf("%w: wrote %s, read %s", ErrBootVerify, sel, got.BootDeviceSelector)
		}
		return nil
	})
}

// BootDevice reads the boot flags (parameter 5). dev is "" when no override is set; an
// override that bmc.BootDevice cannot name (floppy, diagnostic partition, ...) is an error.
func (c *Client) BootDevice(ctx context.Context) (bmc.BootDevice, bmc.BootOptions, error) {
	got := &types.BootOptionParam_BootFlags{}
	err := c.do(ctx, "get boot device", true, func(ctx context.Context, gc *goipmi.Client) error {
		return gc.GetSystemBootOptionsParamFor(ctx, got)
	})
	if err != nil {
		return "", bmc.BootOptions{}, err
	}
	opts := bmc.BootOptions{Persistent: got.Persist, EFI: bool(got.BIOSBootType)}
	switch got.BootDeviceSelector {
	case types.BootDeviceSelectorNoOverride:
		return "", opts, nil
	case types.BootDeviceSelectorForcePXE:
		return bmc.BootPXE, opts, nil
	case types.BootDeviceSelectorForceHardDrive, types.BootDeviceSelectorForceHardDriveSafe:
		return bmc.BootDisk, opts, nil
	case types.BootDeviceSelectorForceCDROM, types.BootDeviceSelectorForceRemoteCDROM:
		return bmc.BootCDROM, opts, nil
	case types.BootDeviceSelectorForceBIOSSetup:
		return bmc.BootBIOS, opts, nil
	}
	return "", opts, &Error{Addr: c.addr, Op: "get boot device", Err: fmt.Errorf("unmapped boot device selector %s", got.BootDeviceSelector)}
}

// ResetBMC restarts the management controller: a warm reset (App 0x03), or a cold one
// (App 0x02) when the client was built WithColdBMCReset. The session dies with the BMC, so
// it is dropped; the next call reconnects (after the BMC has rebooted, which takes minutes on
// real hardware: callers should poll with their own deadline).
func (c *Client) ResetBMC(ctx context.Context) error {
	if c.cfg.coldReset {
		return c.ResetBMCCold(ctx)
	}
	return c.resetBMC(ctx, "warm bmc reset", func(ctx context.Context, gc *goipmi.Client) error {
		return gc.WarmReset(ctx)
	})
}

// ResetBMCCold issues a cold reset (App 0x02) of the management controller.
func (c *Client) ResetBMCCold(ctx context.Context) error {
	return c.resetBMC(ctx, "cold bmc reset", func(ctx context.Context, gc *goipmi.Client) error {
		return gc.ColdReset(ctx)
	})
}

func (c *Client) resetBMC(ctx context.Context, op string, fn func(context.Context, *goipmi.Client) error) error {
	err := c.do(ctx, op, false, fn)
	c.mu.Lock()
	c.dropLocked(false) // the BMC is rebooting: nothing will answer Close Session
	c.mu.Unlock()
	return err
}

// Close ends the session (Close Session command, bounded by the timeout) and releases the
// socket even when the BMC does not answer. It is idempotent, and the client stays usable:
// a later call opens a new session.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gc == nil {
		return nil
	}
	gc := c.gc
	c.gc = nil
	cctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	if err := gc.Close(cctx); err != nil {
		return &Error{Addr: c.addr, Op: "close session", Err: err}
	}
	return nil
}

// do runs fn with an open session, retrying per the package rules. retry says whether fn may
// be repeated after it possibly reached the BMC; session setup can always be repeated.
func (c *Client) do(ctx context.Context, op string, retry bool, fn func(context.Context, *goipmi.Client) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()

	delay := c.cfg.backoff
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return &Error{Addr: c.addr, Op: op, Attempts: attempt - 1, Err: err}
		}
		sent := false
		err := func() error {
			actx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
			defer cancel()
			if c.gc == nil {
				if err := c.connectLocked(actx); err != nil {
					return fmt.Errorf("open session: %w", err)
				}
			}
			sent = true
			return fn(actx, c.gc)
		}()
		if err == nil {
			return nil
		}
		if isTransport(err) {
			// A session that timed out is of unknown state on the BMC side; rebuilding it
			// is cheaper than guessing. If it was established, the BMC was alive moments
			// ago, so it is asked (briefly) to free the slot: BMCs have only a handful and
			// an abandoned one stays taken for the 60 s inactivity timeout.
			c.dropLocked(sent)
		}
		if !retryable(err) || (sent && !retry) || attempt > c.cfg.retries || ctx.Err() != nil {
			if sent && !retry && isTransport(err) {
				err = fmt.Errorf("outcome unknown, not re-sent: %w", err)
			}
			if isTimeout(err) && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%w: %w", ErrTimeout, err)
			}
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				// go-ipmi may report the caller's expired deadline as its own read
				// timeout; keep the caller's cause visible to errors.Is.
				err = fmt.Errorf("%w: %w", cerr, err)
			}
			return &Error{Addr: c.addr, Op: op, Attempts: attempt, Err: err}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return &Error{Addr: c.addr, Op: op, Attempts: attempt, Err: fmt.Errorf("%w (last error: %v)", ctx.Err(), err)}
		case <-t.C:
		}
		delay *= 2
		if delay > c.cfg.maxBackoff {
			delay = c.cfg.maxBackoff
		}
	}
}

func (c *Client) connectLocked(ctx context.Context) error {
	gc, err := goipmi.NewClient(c.ep.Address, c.ep.Port, c.ep.Username, c.ep.Password)
	if err != nil {
		return err
	}
	// One datagram per exchange, waiting for the whole attempt: go-ipmi's own resends
	// repeat the identical packet, and BMCs whose sequence window accepts duplicates (go-ipmi's
	// server does) execute it again, which for a power cycle means two cycles. go-ipmi also
	// resends in a tight loop when the context deadline and its read deadline coincide.
	// Retrying is therefore left to do(), which knows whether a command may be repeated.
	gc.WithTimeout(c.cfg.timeout).WithRetry(0).WithInterface(goipmi.InterfaceLanplus)
	ids := make([]types.CipherSuiteID, len(c.cfg.cipherSuites))
	for i, id := range c.cfg.cipherSuites {
		ids[i] = types.CipherSuiteID(id)
	}
	gc.WithCipherSuiteID(ids...)
	if err := gc.Connect(ctx); err != nil {
		abandon(gc)
		return err
	}
	c.gc = gc
	return nil
}

// dropLocked forgets the session. With graceful it first sends Close Session, bounded by a
// short budget (half the timeout, at most 1 s); otherwise it does not talk to the BMC.
func (c *Client) dropLocked(graceful bool) {
	if c.gc == nil {
		return
	}
	gc := c.gc
	c.gc = nil
	if !graceful {
		abandon(gc)
		return
	}
	budget := c.cfg.timeout / 2
	if budget > time.Second {
		budget = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	_ = gc.Close(ctx) // closes the socket whatever the BMC answers
}

// abandon closes go-ipmi's socket and keep-alive goroutine without sending Close Session: with
// an already-cancelled context the Close Session exchange fails at once, and go-ipmi then
// closes the UDP socket regardless. Used when the BMC is not answering anyway.
func abandon(gc *goipmi.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = gc.Close(ctx)
}

func setInProgress(ctx context.Context, gc *goipmi.Client, v types.SetInProgressState) error {
	return setParam(ctx, gc, &types.BootOptionParam_SetInProgress{Value: v})
}

// setParam is go-ipmi's SetSystemBootOptionsParamFor without its string-only error wrapping
// lost in the middle: completion codes must stay inspectable for the tolerance rules above.
func setParam(ctx context.Context, gc *goipmi.Client, p types.BootOptionParameter) error {
	sel, _, _ := p.BootOptionParameter()
	_, err := gc.SetSystemBootOptionsParam(ctx, &chassis.SetSystemBootOptionsParamRequest{
		ParamSelector: sel,
		ParamData:     p.Pack(),
	})
	return err
}

func isCC(err error, cc types.CompletionCode) bool {
	re, ok := types.IsResponseError(err)
	return ok && re.CompletionCode() == cc
}

func selectorFor(dev bmc.BootDevice) (types.BootDeviceSelector, error) {
	switch dev {
	case bmc.BootPXE:
		return types.BootDeviceSelectorForcePXE, nil
	case bmc.BootDisk:
		return types.BootDeviceSelectorForceHardDrive, nil
	case bmc.BootCDROM:
		return types.BootDeviceSelectorForceCDROM, nil
	case bmc.BootBIOS:
		return types.BootDeviceSelectorForceBIOSSetup, nil
	}
	_, err := bmc.ParseBootDevice(string(dev))
	if err == nil {
		err = fmt.Errorf("unsupported boot device %q", dev)
	}
	return 0, err
}

// sameDevice treats the "safe mode" disk selector as disk: some BMCs normalise to it.
func sameDevice(got, want types.BootDeviceSelector) bool {
	if got == want {
		return true
	}
	disk := func(s types.BootDeviceSelector) bool {
		return s == types.BootDeviceSelectorForceHardDrive || s == types.BootDeviceSelectorForceHardDriveSafe
	}
	return disk(got) && disk(want)
}
