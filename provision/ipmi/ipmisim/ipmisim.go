// Package ipmisim is an embeddable simulated IPMI BMC for the fleet simulator and for tests:
// a real RMCP+ (lanplus) endpoint on a 127.0.0.1 UDP port, answered by go-ipmi's pure-Go BMC
// server, behind which a simulated machine holds power state and boot flags.
//
// It is cheap enough to run hundreds in one process (one UDP socket and two goroutines each
// while idle), and real enough that ipmitool and Prybar's ipmi client cannot tell it from a
// BMC for the commands Prybar uses: Get Chassis Status, Chassis Control, Set/Get System Boot
// Options and Warm/Cold Reset.
//
// Simulated behaviour, and why:
//   - Power changes take effect after Config.PowerDelay, like a real PSU/BIOS, so callers that
//     read the state right after commanding it (instead of polling) are caught.
//   - A power cycle goes off, then on, one PowerDelay each; a hard reset keeps power on.
//   - ACPI soft shutdown powers off after the delay: the simulated OS always cooperates.
//   - A one-time boot override is consumed when the machine boots (off->on, cycle, reset);
//     a persistent one stays. LastBoot tells which device the machine last booted from.
//   - BMC warm/cold resets are counted and do not touch the machine. go-ipmi's default
//     handlers route App Warm/Cold Reset to the chassis HAL (the same hooks as soft shutdown
//     and hard reset), which would power-cycle the simulated machine; this package overrides
//     those two handlers.
//   - Every dispatched command can be delayed by Config.CommandLatency, so overlapping
//     operations become observable in InFlight/PeakInFlight (handlers otherwise finish in
//     microseconds and concurrency would never show).
package ipmisim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gobmc "github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/prybar/prybar/provision/bmc"
)

// Default credentials of a simulated BMC (user id 2, administrator).
const (
	DefaultUser     = "admin"
	DefaultPassword = "password"
)

// Config describes one simulated BMC. The zero value is usable: 127.0.0.1 on a free port,
// admin/password, machine off, power changes immediate.
type Config struct {
	Addr           string        // listen address, default "127.0.0.1:0" (free port)
	User           string        // default DefaultUser
	Password       string        // default DefaultPassword
	PoweredOn      bool          // initial power state
	PowerDelay     time.Duration // delay before a commanded power change takes effect
	CommandLatency time.Duration // added to every command; keep below 1 s (client resend time)
	OpLatency      time.Duration // added to chassis commands and BMC resets only (slow or hung BMC)
	MaxSessions    int           // concurrent RMCP+ sessions, default 4 like most BMCs
	LogLimit       int           // events kept by Log, default 1000 (oldest dropped)
	// GUID is the System GUID the BMC reports (zero: a fixed default shared by every simulator).
	GUID [16]byte
	// OnPower, when set, is told every boot (on, with the device booted from: power-on, cycle or
	// reset) and every power-off. It is called with the BMC's lock held, in order, so it must not
	// block or call the BMC.
	OnPower func(on bool, dev bmc.BootDevice)
}

// BMC is one simulated BMC. Create it with New, then Start; Close stops it.
type BMC struct {
	cfg Config

	mu          sync.Mutex
	on          bool
	gen         uint64      // bumped per power change; a pending timer of an older gen is void
	timer       *time.Timer // pending power change, nil when none
	flags       types.BootOptionParam_BootFlags
	bootAck     types.BootOptionParam_BootInfoAcknowledge
	lastBoot    bmc.BootDevice
	boots       int
	warmResets  int
	coldResets  int
	log         []string
	closed      bool
	started     bool
	srv         *server.Server
	conn        *udp.Conn
	addr        *net.UDPAddr
	serveDone   chan struct{}
	serveCancel context.CancelFunc
	core        *gobmc.BMC

	commands     atomic.Int64
	ops          atomic.Int64
	inFlight     atomic.Int64
	peakInFlight atomic.Int64
	peakSessions atomic.Int64
}

// New returns a stopped simulated BMC.
func New(cfg Config) *BMC {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.Password == "" {
		cfg.Password = DefaultPassword
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = gobmc.MaxSessions
	}
	if cfg.LogLimit <= 0 {
		cfg.LogLimit = 1000
	}
	return &BMC{cfg: cfg, on: cfg.PoweredOn}
}

// Start binds the UDP socket and serves in the background. It fails if the address is taken.
// A BMC can be started once.
func (b *BMC) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return errors.New("ipmisim: Start called twice or after Close")
	}
	h := &simHAL{HAL: mock.New(), ch: &chassisHAL{b: b}}
	info := gobmc.DeviceInfo{
		DeviceID:                0x20,
		DeviceRevision:          1,
		FirmwareMajor:           1,
		IPMIVersion:             0x20,
		ManufacturerID:          0x0000, // unspecified vendor: clients must not key off it
		ProductID:               0x0001,
		AdditionalDeviceSupport: 0x01 << 7, // chassis device
	}
	guid := b.cfg.GUID
	if guid == ([16]byte{}) {
		copy(guid[:], "prybar-ipmisim")
	}
	core := gobmc.New(info, guid, h, gobmc.WithClock(clock.Real))
	core.Sessions = gobmc.NewSessionStoreWithOptions(clock.Real, gobmc.WithMaxSessions(b.cfg.MaxSessions))
	core.Sessions.SetOnRemove(core.SOL.DeactivateBySession)
	user, err := core.Users.Add(2, b.cfg.User)
	if err != nil {
		return fmt.Errorf("ipmisim: add user: %w", err)
	}
	user.SetPassword([]byte(b.cfg.Password))
	user.Enabled = true
	user.ChannelAccess[1] = gobmc.UserChannelAccess{MaxPrivilege: gobmc.PrivilegeLevelAdministrator, Enabled: true}

	// A short read timeout keeps the serve loop responsive without busy-waiting; Close
	// unblocks it anyway by closing the socket.
	conn, err := udp.Listen(b.cfg.Addr, udp.WithReadTimeout(time.Second))
	if err != nil {
		return fmt.Errorf("ipmisim: %w", err)
	}
	b.conn = conn
	b.addr = conn.LocalAddr().(*net.UDPAddr)
	b.core = core
	b.srv = server.NewServer(core, conn, server.WithHandlerRegistry(b.registry()))
	ctx, cancel := context.WithCancel(context.Background())
	b.serveCancel = cancel
	b.serveDone = make(chan struct{})
	b.started = true
	go func() {
		defer close(b.serveDone)
		_ = b.srv.Serve(ctx)
	}()
	return nil
}

// registry is go-ipmi's full command set, wrapped with the op accounting middleware, with App
// Warm/Cold Reset replaced (see the package comment).
func (b *BMC) registry() *handlers.Registry {
	reg := handlers.NewRegistry()
	reg.Use(b.accounting) // must precede registration: middleware is bound at Register time
	handlers.RegisterAllHandlers(reg)
	reg.RegisterFunc(types.CommandWarmReset, func(context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error) {
		b.mu.Lock()
		b.warmResets++
		b.eventLocked("bmc warm reset")
		b.mu.Unlock()
		return nil, types.CodeOK, nil
	})
	reg.RegisterFunc(types.CommandColdReset, func(context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error) {
		b.mu.Lock()
		b.coldResets++
		b.eventLocked("bmc cold reset")
		b.mu.Unlock()
		return nil, types.CodeOK, nil
	})
	return reg
}

type handlerFunc func(context.Context, *handlers.HandlerContext, []byte) ([]byte, types.CompletionCode, error)

func (f handlerFunc) Handle(ctx context.Context, h *handlers.HandlerContext, d []byte) ([]byte, types.CompletionCode, error) {
	return f(ctx, h, d)
}

// accounting counts commands, operations (chassis commands and BMC resets: what changes or
// reads the machine) and concurrency. It is the hook a fleet simulator uses to prove that
// Prybar never runs two operations on one BMC at once and never leaks sessions.
func (b *BMC) accounting(next handlers.Handler) handlers.Handler {
	return handlerFunc(func(ctx context.Context, hctx *handlers.HandlerContext, data []byte) ([]byte, types.CompletionCode, error) {
		b.commands.Add(1)
		cmd := hctx.Command
		isOp := cmd.NetFn == types.NetFnChassisRequest ||
			(cmd.NetFn == types.NetFnAppRequest && (cmd.ID == types.CommandWarmReset.ID || cmd.ID == types.CommandColdReset.ID))
		if isOp {
			b.ops.Add(1)
		}
		n := b.inFlight.Add(1)
		defer b.inFlight.Add(-1)
		raiseTo(&b.peakInFlight, n)
		if hctx.BMC != nil {
			raiseTo(&b.peakSessions, int64(hctx.BMC.Sessions.Count()))
		}
		d := b.cfg.CommandLatency
		if isOp {
			d += b.cfg.OpLatency
		}
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		return next.Handle(ctx, hctx, data)
	})
}

func raiseTo(peak *atomic.Int64, v int64) {
	for {
		p := peak.Load()
		if v <= p || peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// Close stops serving and cancels pending power changes. It is idempotent.
func (b *BMC) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.cancelPendingLocked()
	srv, cancel, done := b.srv, b.serveCancel, b.serveDone
	b.mu.Unlock()
	if srv == nil {
		return nil
	}
	cancel()
	err := srv.Close()
	<-done
	return err
}

// Addr returns the bound "host:port" (valid after Start).
func (b *BMC) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addr == nil {
		return b.cfg.Addr
	}
	return b.addr.String()
}

// Port returns the bound UDP port (valid after Start).
func (b *BMC) Port() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addr == nil {
		return 0
	}
	return b.addr.Port
}

// Endpoint returns the bmc.Endpoint a Prybar client uses to reach this BMC.
func (b *BMC) Endpoint() bmc.Endpoint {
	host, port, _ := net.SplitHostPort(b.Addr())
	p, _ := strconv.Atoi(port)
	return bmc.Endpoint{Protocol: "ipmi", Address: host, Port: p, Username: b.cfg.User, Password: b.cfg.Password}
}

// Power returns the simulated machine's actual power state (not a pending one).
func (b *BMC) Power() bmc.PowerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		return bmc.PowerOn
	}
	return bmc.PowerOff
}

// SetPower changes power behind the BMC's back (a person at the button): immediately,
// cancelling pending commanded changes. Powering on consumes a one-time boot override.
func (b *BMC) SetPower(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cancelPendingLocked()
	b.applyPowerLocked(on, "button")
}

// BootDevice returns the boot override currently set: "" when none, plus its options.
func (b *BMC) BootDevice() (bmc.BootDevice, bmc.BootOptions) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return overrideLocked(&b.flags), bmc.BootOptions{Persistent: b.flags.Persist, EFI: bool(b.flags.BIOSBootType)}
}

// LastBoot returns the device the machine booted from at its last power-on or reset ("disk"
// when no override applied; "" before the first boot), and how many boots happened.
func (b *BMC) LastBoot() (bmc.BootDevice, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastBoot, b.boots
}

// BMCResets returns how many warm and cold BMC resets were received.
func (b *BMC) BMCResets() (warm, cold int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.warmResets, b.coldResets
}

// Log returns state-changing events, oldest first: "chassis power on", "power on",
// "boot pxe once", "booted pxe", "bmc warm reset", ... ("chassis ..." is the command,
// the bare word its effect after PowerDelay).
func (b *BMC) Log() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.log...)
}

// Commands returns how many IPMI commands were dispatched, session upkeep included.
func (b *BMC) Commands() int64 { return b.commands.Load() }

// Ops returns how many chassis commands (status, control, boot options) and BMC resets were
// dispatched: the operations a provisioning run is made of.
func (b *BMC) Ops() int64 { return b.ops.Load() }

// InFlight returns the number of commands being handled right now.
func (b *BMC) InFlight() int64 { return b.inFlight.Load() }

// PeakInFlight returns the largest number of commands handled at the same time.
func (b *BMC) PeakInFlight() int64 { return b.peakInFlight.Load() }

// PeakSessions returns the largest number of RMCP+ sessions (pending or active) seen when a
// command arrived. More than one means several consoles were logged in at once.
func (b *BMC) PeakSessions() int64 { return b.peakSessions.Load() }

// Sessions returns the number of RMCP+ sessions currently held (valid after Start).
func (b *BMC) Sessions() int {
	b.mu.Lock()
	core := b.core
	b.mu.Unlock()
	if core == nil {
		return 0
	}
	return core.Sessions.Count()
}

func (b *BMC) eventLocked(s string) {
	if len(b.log) >= b.cfg.LogLimit {
		b.log = append(b.log[:0], b.log[1:]...)
	}
	b.log = append(b.log, s)
}

// applyPowerLocked sets power now; an off->on transition is a boot.
func (b *BMC) applyPowerLocked(on bool, why string) {
	was := b.on
	b.on = on
	if on {
		b.eventLocked("power on (" + why + ")")
	} else {
		b.eventLocked("power off (" + why + ")")
	}
	if on && !was {
		b.bootLocked()
	}
	if !on && was && b.cfg.OnPower != nil {
		b.cfg.OnPower(false, "")
	}
}

// bootLocked records a boot and consumes a one-time override, as BIOS does (spec 28.12:
// the valid bit is cleared when the flags are used unless persistent).
func (b *BMC) bootLocked() {
	dev := overrideLocked(&b.flags)
	if dev == "" {
		dev = bmc.BootDisk
	}
	b.lastBoot = dev
	b.boots++
	b.eventLocked("booted " + string(dev))
	if b.flags.BootFlagsValid && !b.flags.Persist {
		b.flags = types.BootOptionParam_BootFlags{}
	}
	if b.cfg.OnPower != nil {
		b.cfg.OnPower(true, dev)
	}
}

// scheduleLocked runs steps one PowerDelay apart, superseding any pending change (a new
// command wins, as on real hardware). Each step runs under the lock. With no delay the steps
// run at once, before the command is answered.
func (b *BMC) scheduleLocked(steps ...func()) {
	b.cancelPendingLocked()
	if b.cfg.PowerDelay <= 0 {
		for _, s := range steps {
			s()
		}
		return
	}
	gen := b.gen
	var next func(i int)
	next = func(i int) {
		b.timer = time.AfterFunc(b.cfg.PowerDelay, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.closed || b.gen != gen {
				return // superseded; the generation check covers a Stop that lost the race
			}
			steps[i]()
			if i+1 < len(steps) {
				next(i + 1)
			} else {
				b.timer = nil
			}
		})
	}
	next(0)
}

func (b *BMC) cancelPendingLocked() {
	b.gen++
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
}

func overrideLocked(f *types.BootOptionParam_BootFlags) bmc.BootDevice {
	if !f.BootFlagsValid {
		return ""
	}
	switch f.BootDeviceSelector {
	case types.BootDeviceSelectorForcePXE:
		return bmc.BootPXE
	case types.BootDeviceSelectorForceHardDrive, types.BootDeviceSelectorForceHardDriveSafe:
		return bmc.BootDisk
	case types.BootDeviceSelectorForceCDROM, types.BootDeviceSelectorForceRemoteCDROM:
		return bmc.BootCDROM
	case types.BootDeviceSelectorForceBIOSSetup:
		return bmc.BootBIOS
	}
	return ""
}

// simHAL is go-ipmi's in-memory HAL (sensors, FRU, network) with our chassis.
type simHAL struct {
	*mock.HAL
	ch *chassisHAL
}

func (h *simHAL) Chassis() hal.ChassisHAL { return h.ch }

// chassisHAL adapts go-ipmi's chassis hooks to the simulated machine. go-ipmi maps Chassis
// Control 0x00/0x01 to SetPower, 0x02 to PowerCycle, 0x03 (hard reset) to ColdReset and
// 0x05 (ACPI soft shutdown) to WarmReset.
type chassisHAL struct{ b *BMC }

func (c *chassisHAL) PowerState(context.Context) (bool, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.b.on, nil
}

func (c *chassisHAL) SetPower(_ context.Context, on bool) error {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.eventLocked("chassis power on")
	} else {
		b.eventLocked("chassis power off")
	}
	b.scheduleLocked(func() {
		if b.on != on {
			b.applyPowerLocked(on, "command")
		}
	})
	return nil
}

func (c *chassisHAL) PowerCycle(context.Context) error {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.eventLocked("chassis power cycle")
	b.scheduleLocked(
		func() { b.applyPowerLocked(false, "cycle") },
		func() { b.applyPowerLocked(true, "cycle") },
	)
	return nil
}

// ColdReset is Chassis Control "hard reset": a reboot without a power transition.
func (c *chassisHAL) ColdReset(context.Context) error {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.eventLocked("chassis hard reset")
	b.scheduleLocked(func() {
		if b.on {
			b.eventLocked("reset")
			b.bootLocked()
		}
	})
	return nil
}

// WarmReset is Chassis Control "soft shutdown" (ACPI): the simulated OS always complies.
func (c *chassisHAL) WarmReset(context.Context) error {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.eventLocked("chassis soft off")
	b.scheduleLocked(func() {
		if b.on {
			b.applyPowerLocked(false, "soft")
		}
	})
	return nil
}

func (c *chassisHAL) Identify(context.Context, uint8) error { return nil }

func (c *chassisHAL) IntrusionState(context.Context) (bool, error) { return false, nil }

func (c *chassisHAL) SetBootFlags(_ context.Context, f *types.BootOptionParam_BootFlags) error {
	if f == nil {
		return hal.ErrNotSupported
	}
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flags = *f
	if dev := overrideLocked(f); dev != "" {
		mode := "once"
		if f.Persist {
			mode = "persistent"
		}
		if f.BIOSBootType {
			mode += " efi"
		}
		b.eventLocked("boot " + string(dev) + " " + mode)
	} else {
		b.eventLocked("boot override cleared")
	}
	return nil
}

// GetBootFlags always answers (no override = zeroed flags), unlike go-ipmi's mock which
// answers 80h until something was set: real BMCs report parameter 5 from power-on.
func (c *chassisHAL) GetBootFlags(context.Context) (*types.BootOptionParam_BootFlags, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	f := c.b.flags
	return &f, nil
}

func (c *chassisHAL) SetBootInfoAcknowledge(_ context.Context, a *types.BootOptionParam_BootInfoAcknowledge) error {
	if a == nil {
		return hal.ErrNotSupported
	}
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	c.b.bootAck = *a
	return nil
}

func (c *chassisHAL) GetBootInfoAcknowledge(context.Context) (*types.BootOptionParam_BootInfoAcknowledge, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	a := c.b.bootAck
	return &a, nil
}
