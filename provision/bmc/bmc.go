// Package bmc holds the protocol-neutral vocabulary of out-of-band control: power states, power
// actions, boot devices and the Controller contract that the Redfish and IPMI clients both satisfy.
// Executors depend on this package, never on one protocol, so the protocol is chosen per BMC.
package bmc

import (
	"context"
	"errors"
	"fmt"
)

// PowerState is a machine's power state as confirmed by its BMC.
type PowerState string

const (
	PowerOn  PowerState = "on"
	PowerOff PowerState = "off"
)

// ErrUnknownPowerState is returned when a BMC answers with a power state that is neither on nor off
// (or answers nothing readable). Callers must treat it as a failure, never as a reason to act.
var ErrUnknownPowerState = errors.New("bmc: power state unknown or unreadable")

// PowerAction is an operator's request to change power.
type PowerAction string

const (
	ActionOn    PowerAction = "on"    // power on; no error if already on
	ActionOff   PowerAction = "off"   // hard power off; no error if already off
	ActionSoft  PowerAction = "soft"  // graceful (ACPI) shutdown
	ActionCycle PowerAction = "cycle" // off then on
	ActionReset PowerAction = "reset" // warm reset (force restart)
)

// ParsePowerAction validates s as a PowerAction.
func ParsePowerAction(s string) (PowerAction, error) {
	switch a := PowerAction(s); a {
	case ActionOn, ActionOff, ActionSoft, ActionCycle, ActionReset:
		return a, nil
	}
	return "", fmt.Errorf("bmc: unknown power action %q (want on, off, soft, cycle or reset)", s)
}

// BootDevice is the device a machine boots from next.
type BootDevice string

const (
	BootPXE   BootDevice = "pxe"
	BootDisk  BootDevice = "disk"
	BootCDROM BootDevice = "cdrom"
	BootBIOS  BootDevice = "bios"
)

// ParseBootDevice validates s as a BootDevice.
func ParseBootDevice(s string) (BootDevice, error) {
	switch d := BootDevice(s); d {
	case BootPXE, BootDisk, BootCDROM, BootBIOS:
		return d, nil
	}
	return "", fmt.Errorf("bmc: unknown boot device %q (want pxe, disk, cdrom or bios)", s)
}

// BootMode is the firmware boot mode a boot override asks for.
type BootMode string

const (
	BootModeKeep   BootMode = ""       // leave the mode the BMC has (the default)
	BootModeUEFI   BootMode = "uefi"   // UEFI boot
	BootModeLegacy BootMode = "legacy" // legacy BIOS boot
)

// BootOptions qualify a boot device override.
type BootOptions struct {
	Persistent bool // every boot, not only the next one
	// EFI asks for UEFI boot. False does not ask for legacy boot: it keeps the machine's mode,
	// because flipping a UEFI machine to legacy makes it unbootable. Use Mode for legacy.
	EFI  bool
	Mode BootMode // overrides EFI when set
}

// WantMode is the boot mode the options ask for: Mode, else UEFI when EFI is set, else keep.
func (o BootOptions) WantMode() BootMode {
	if o.Mode != BootModeKeep {
		return o.Mode
	}
	if o.EFI {
		return BootModeUEFI
	}
	return BootModeKeep
}

// Controller is what an executor needs from one BMC. Implementations must be safe to call once per
// operation and must release any session they hold when Close returns, also after errors.
type Controller interface {
	// PowerState returns the confirmed power state, or ErrUnknownPowerState.
	PowerState(ctx context.Context) (PowerState, error)
	// Power performs the action. It does not wait for the new state; callers poll PowerState.
	Power(ctx context.Context, action PowerAction) error
	// SetBootDevice sets the next (or every) boot device and verifies it where the protocol allows.
	SetBootDevice(ctx context.Context, dev BootDevice, opts BootOptions) error
	// ResetBMC restarts the management controller itself.
	ResetBMC(ctx context.Context) error
	// Close releases the session (Redfish logout); it is idempotent.
	Close(ctx context.Context) error
}

// Endpoint says how to reach one BMC.
type Endpoint struct {
	Protocol string // "redfish" or "ipmi"
	Address  string // host or IP
	Port     int    // 0 means the protocol's default (443 for redfish, 623 for ipmi)
	Username string
	Password string
	Insecure bool   // skip TLS verification (redfish)
	Scheme   string // "https" (default) or "http" (redfish; simulators)
	SystemID string // redfish system id when the BMC manages several
}

// Key is the concurrency key of the BMC: one operation at a time per key.
func (e Endpoint) Key() string { return fmt.Sprintf("%s:%d", e.Address, e.Port) }
