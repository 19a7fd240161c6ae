package redfish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prybar/prybar/provision/bmc"
)

type resetAction struct {
	Target     string   `json:"target"`
	Allowable  []string `json:"ResetType@Redfish.AllowableValues"`
	ActionInfo string   `json:"@Redfish.ActionInfo"`
}

type computerSystem struct {
	ID           string `json:"@odata.id"`
	RID          string `json:"Id"`
	Manufacturer string
	Model        string
	SerialNumber string
	UUID         string
	SKU          string
	BiosVersion  string
	Name         string
	HostName     string
	SystemType   string
	// LastResetTime changes with every reset the BMC carries out; it tells the client whether a
	// reset whose answer was lost happened (BMCs without it leave it empty).
	LastResetTime string
	Status        status
	PowerState    any // kept loose: a null or odd value must become ErrUnknownPowerState, not a decode error
	Boot          struct {
		Target        string   `json:"BootSourceOverrideTarget"`
		Enabled       string   `json:"BootSourceOverrideEnabled"`
		Mode          string   `json:"BootSourceOverrideMode"`
		TargetAllowed []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
	}
	ProcessorSummary struct {
		Count int
		Model string
	}
	MemorySummary struct {
		TotalSystemMemoryGiB *float64
	}
	Processors         odataID
	Memory             odataID
	EthernetInterfaces odataID
	NetworkInterfaces  odataID
	SimpleStorage      odataID
	Storage            odataID
	VirtualMedia       odataID
	Links              struct {
		Chassis   []odataID
		ManagedBy []odataID
	}
	Actions struct {
		Reset resetAction `json:"#ComputerSystem.Reset"`
	}
}

func (c *Client) getSystem(ctx context.Context) (*computerSystem, string, error) {
	p, err := c.system(ctx)
	if err != nil {
		return nil, "", err
	}
	var s computerSystem
	etag, err := c.get(ctx, p, &s)
	if err != nil {
		return nil, "", err
	}
	if s.ID == "" {
		s.ID = p
	}
	return &s, etag, nil
}

func mapPowerState(v any) (bmc.PowerState, error) {
	switch v {
	case "On":
		return bmc.PowerOn, nil
	case "Off":
		return bmc.PowerOff, nil
	case nil:
		return "", fmt.Errorf("%w: PowerState is absent or null", bmc.ErrUnknownPowerState)
	}
	return "", fmt.Errorf("%w: PowerState is %v", bmc.ErrUnknownPowerState, v)
}

// PowerState reads the system's power state; transitional or missing values are ErrUnknownPowerState.
func (c *Client) PowerState(ctx context.Context) (bmc.PowerState, error) {
	p, err := c.system(ctx)
	if err != nil {
		return "", err
	}
	resp, err := c.call(ctx, http.MethodGet, p, nil, nil)
	if err != nil {
		return "", err
	}
	var s struct{ PowerState any }
	if err := json.Unmarshal(resp.body, &s); err != nil {
		return "", fmt.Errorf("%w: GET %s: %v", bmc.ErrUnknownPowerState, p, err)
	}
	return mapPowerState(s.PowerState)
}

// standardResetTypes is assumed when a BMC does not say which reset types it accepts.
var standardResetTypes = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart",
	"Nmi", "ForceOn", "PushPowerButton", "PowerCycle"}

// allowedResetTypes reads the allowable values inline, else from the action's ActionInfo.
func (c *Client) allowedResetTypes(ctx context.Context, a resetAction) []string {
	if len(a.Allowable) > 0 {
		return a.Allowable
	}
	if a.ActionInfo != "" {
		var info struct {
			Parameters []struct {
				Name            string
				AllowableValues []string
			}
		}
		if _, err := c.get(ctx, a.ActionInfo, &info); err == nil {
			for _, p := range info.Parameters {
				if p.Name == "ResetType" && len(p.AllowableValues) > 0 {
					return p.AllowableValues
				}
			}
		}
	}
	return standardResetTypes
}

func pick(allowed []string, prefs ...string) string {
	for _, p := range prefs {
		if slices.Contains(allowed, p) {
			return p
		}
	}
	return ""
}

// Power performs action with the best reset type the BMC allows. It does not wait for the result,
// except that a cycle on a BMC without PowerCycle is done as ForceOff, wait for Off, then On.
func (c *Client) Power(ctx context.Context, action bmc.PowerAction) error {
	s, _, err := c.getSystem(ctx)
	if err != nil {
		return err
	}
	act := s.Actions.Reset
	if act.Target == "" {
		return fmt.Errorf("redfish: system %s has no ComputerSystem.Reset action", s.ID)
	}
	allowed := c.allowedResetTypes(ctx, act)
	var rt string
	switch action {
	case bmc.ActionOn:
		rt = pick(allowed, "On", "ForceOn")
	case bmc.ActionOff:
		rt = pick(allowed, "ForceOff")
	case bmc.ActionSoft:
		rt = pick(allowed, "GracefulShutdown")
	case bmc.ActionReset:
		rt = pick(allowed, "ForceRestart")
	case bmc.ActionCycle:
		if rt = pick(allowed, "PowerCycle"); rt == "" {
			off, on := pick(allowed, "ForceOff"), pick(allowed, "On", "ForceOn")
			if off != "" && on != "" {
				return c.cycleByHand(ctx, s.ID, s.LastResetTime, act.Target, off, on)
			}
		}
	default:
		return fmt.Errorf("redfish: unknown power action %q", action)
	}
	if rt == "" {
		return fmt.Errorf("redfish: system %s allows no reset type for %q (allowed: %s)", s.ID, action, strings.Join(allowed, ", "))
	}
	err = c.resetDecided(ctx, s.ID, s.LastResetTime, act.Target, rt)
	if st := statusOf(err); st >= 400 && st < 500 && (action == bmc.ActionOn || action == bmc.ActionOff) {
		// Some BMCs refuse On while on (or ForceOff while off) with a 4xx; the contract says that
		// is not an error, so the refusal is forgiven when the state already is the wanted one.
		want := map[bmc.PowerAction]bmc.PowerState{bmc.ActionOn: bmc.PowerOn, bmc.ActionOff: bmc.PowerOff}[action]
		if cur, serr := c.PowerState(ctx); serr == nil && cur == want {
			return nil
		}
	}
	return err
}

func (c *Client) reset(ctx context.Context, target, rt string) error {
	_, err := c.call(ctx, http.MethodPost, target, map[string]string{"ResetType": rt}, nil)
	if err != nil {
		return fmt.Errorf("redfish: reset %s: %w", rt, err)
	}
	return nil
}

// settledBy maps the reset types whose effect is a state, so that sending them twice changes
// nothing, to that state. The others (PowerCycle, ForceRestart, PushPowerButton, Nmi…) act
// again each time they are sent.
var settledBy = map[string]bmc.PowerState{
	"On": bmc.PowerOn, "ForceOn": bmc.PowerOn, "ForceOff": bmc.PowerOff, "GracefulShutdown": bmc.PowerOff,
}

// resetDecided posts a reset to the resource at res (a system or manager) once. When the
// answer is lost (no answer, timeout, 5xx) it reads the resource and decides instead of sending
// the reset again blindly:
//   - LastResetTime changed since lastReset: the BMC carried it out; success.
//   - a reset that settles into a state (On, ForceOff…) and that state is there: success.
//   - such a reset and the state is not there: sending it again cannot add an effect; it is
//     re-sent (up to the retry attempts).
//   - any other reset: ErrOutcomeUnknown. Power-cycling a machine twice because an answer was
//     lost is worse than asking an operator.
func (c *Client) resetDecided(ctx context.Context, res, lastReset, target, rt string) error {
	want, settles := settledBy[rt]
	var err error
	for attempt := 1; ; attempt++ {
		err = c.reset(ctx, target, rt)
		if err == nil || !ambiguous(err) {
			return err
		}
		var now struct {
			LastResetTime string
			PowerState    any
		}
		if _, rerr := c.get(ctx, res, &now); rerr != nil {
			return fmt.Errorf("%w: %w; reading %s afterwards failed: %v", ErrOutcomeUnknown, err, res, rerr)
		}
		if now.LastResetTime != "" && now.LastResetTime != lastReset {
			return nil // the BMC carried the reset out; only its answer was lost
		}
		if !settles {
			why := "the BMC does not report LastResetTime"
			if now.LastResetTime != "" {
				why = "LastResetTime did not change, but the request may still be in progress"
			}
			return fmt.Errorf("%w (%s): %w", ErrOutcomeUnknown, why, err)
		}
		if st, serr := mapPowerState(now.PowerState); serr == nil && st == want {
			return nil
		}
		if attempt >= c.cfg.attempts || ctx.Err() != nil {
			return err
		}
	}
}

func (c *Client) cycleByHand(ctx context.Context, sys, lastReset, target, off, on string) error {
	if err := c.resetDecided(ctx, sys, lastReset, target, off); err != nil {
		return err
	}
	var again struct{ LastResetTime string }
	if _, err := c.get(ctx, sys, &again); err == nil {
		lastReset = again.LastResetTime
	}
	deadline := time.Now().Add(c.cfg.cycleTimeout)
	for {
		st, err := c.PowerState(ctx)
		if err == nil && st == bmc.PowerOff {
			break
		}
		// Transitional states are expected right after ForceOff; only a real failure aborts.
		if err != nil && !errors.Is(err, bmc.ErrUnknownPowerState) {
			return fmt.Errorf("redfish: power cycle: waiting for off: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redfish: power cycle: system not off after %s (state %q, err %v)", c.cfg.cycleTimeout, st, err)
		}
		t := time.NewTimer(c.cfg.pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redfish: power cycle: waiting for off: %w", ctx.Err())
		case <-t.C:
		}
	}
	return c.resetDecided(ctx, sys, lastReset, target, on)
}

var bootTargets = map[bmc.BootDevice]string{
	bmc.BootPXE: "Pxe", bmc.BootDisk: "Hdd", bmc.BootCDROM: "Cd", bmc.BootBIOS: "BiosSetup",
}

// SetBootDevice sets the boot override and re-reads it, because some BMCs answer 2xx to the PATCH
// and keep the old override; such a BMC yields ErrOverrideIgnored.
func (c *Client) SetBootDevice(ctx context.Context, dev bmc.BootDevice, opts bmc.BootOptions) error {
	target, ok := bootTargets[dev]
	if !ok {
		return fmt.Errorf("redfish: unknown boot device %q", dev)
	}
	enabled := "Once"
	if opts.Persistent {
		enabled = "Continuous"
	}
	// The mode is sent only when asked for: a PATCH that always carries one flips UEFI machines
	// to legacy boot (or back) behind the operator's back.
	var mode string
	switch m := opts.WantMode(); m {
	case bmc.BootModeKeep:
	case bmc.BootModeUEFI:
		mode = "UEFI"
	case bmc.BootModeLegacy:
		mode = "Legacy"
	default:
		return fmt.Errorf("redfish: unknown boot mode %q (want uefi or legacy)", m)
	}
	s, etag, err := c.getSystem(ctx)
	if err != nil {
		return err
	}
	if a := s.Boot.TargetAllowed; len(a) > 0 && !slices.Contains(a, target) {
		return fmt.Errorf("redfish: system %s does not allow boot target %s (allowed: %s)", s.ID, target, strings.Join(a, ", "))
	}
	boot := map[string]string{"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}
	if mode != "" && mode != s.Boot.Mode {
		boot["BootSourceOverrideMode"] = mode
	}
	err = c.patch(ctx, s.ID, etag, map[string]any{"Boot": boot})
	switch statusOf(err) {
	case http.StatusBadRequest, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity,
		http.StatusNotImplemented:
		// Many BMCs cannot switch boot mode per boot, and a 412 means our ETag went stale: retry once
		// with a fresh ETag and without the mode, which is the part most often refused.
		first := err
		if s, etag, err = c.getSystem(ctx); err != nil {
			return err
		}
		delete(boot, "BootSourceOverrideMode")
		if err = c.patch(ctx, s.ID, etag, map[string]any{"Boot": boot}); err != nil {
			return fmt.Errorf("redfish: set boot override: %w (with boot mode: %v)", err, first)
		}
	case 0:
		if err != nil {
			return fmt.Errorf("redfish: set boot override: %w", err)
		}
	default:
		return fmt.Errorf("redfish: set boot override: %w", err)
	}
	s, _, err = c.getSystem(ctx)
	if err != nil {
		return fmt.Errorf("redfish: verify boot override: %w", err)
	}
	if s.Boot.Target != target {
		return fmt.Errorf("%w: BootSourceOverrideTarget is %q, want %q", ErrOverrideIgnored, s.Boot.Target, target)
	}
	if s.Boot.Enabled != enabled {
		return fmt.Errorf("%w: BootSourceOverrideEnabled is %q, want %q", ErrOverrideIgnored, s.Boot.Enabled, enabled)
	}
	return nil
}

func (c *Client) patch(ctx context.Context, path, etag string, body any) error {
	var hdr map[string]string
	if etag != "" {
		hdr = map[string]string{"If-Match": etag}
	}
	_, err := c.call(ctx, http.MethodPatch, path, body, hdr)
	return err
}

type manager struct {
	ID            string `json:"@odata.id"`
	LastResetTime string
	VirtualMedia  odataID
	Actions       struct {
		Reset resetAction `json:"#Manager.Reset"`
	}
}

// managerPath prefers the manager that manages our system; the first of the Managers collection
// is only a fallback for BMCs that do not link them.
func (c *Client) managerPath(ctx context.Context) (string, error) {
	if s, _, err := c.getSystem(ctx); err == nil && len(s.Links.ManagedBy) > 0 && s.Links.ManagedBy[0].ID != "" {
		return s.Links.ManagedBy[0].ID, nil
	}
	root, err := c.serviceRoot(ctx)
	if err != nil {
		return "", err
	}
	col := root.Managers.ID
	if col == "" {
		col = "/redfish/v1/Managers"
	}
	ms, err := c.members(ctx, col)
	if err != nil {
		return "", err
	}
	if len(ms) == 0 {
		return "", fmt.Errorf("redfish: %s lists no managers", c.base.Host)
	}
	return ms[0], nil
}

// ResetBMC restarts the manager. The BMC forgets its sessions when it reboots, so the client drops
// its own without a logout that could only time out.
func (c *Client) ResetBMC(ctx context.Context) error {
	p, err := c.managerPath(ctx)
	if err != nil {
		return err
	}
	var m manager
	if _, err := c.get(ctx, p, &m); err != nil {
		return err
	}
	act := m.Actions.Reset
	if act.Target == "" {
		return fmt.Errorf("redfish: manager %s has no Manager.Reset action", p)
	}
	allowed := c.allowedResetTypes(ctx, act)
	rt := pick(allowed, "GracefulRestart", "ForceRestart")
	if rt == "" {
		return fmt.Errorf("redfish: manager %s allows no restart (allowed: %s)", p, strings.Join(allowed, ", "))
	}
	if err := c.resetDecided(ctx, p, m.LastResetTime, act.Target, rt); err != nil {
		return err
	}
	c.mu.Lock()
	uri := c.sessionURI
	c.auth, c.token, c.sessionURI = authNone, "", ""
	c.mu.Unlock()
	if uri != "" {
		c.journalClosed(ctx, uri)
	}
	return nil
}

type virtualMedia struct {
	ID         string `json:"@odata.id"`
	MediaTypes []string
	Image      *string
	Inserted   bool
	Actions    struct {
		Insert struct {
			Target string `json:"target"`
		} `json:"#VirtualMedia.InsertMedia"`
		Eject struct {
			Target string `json:"target"`
		} `json:"#VirtualMedia.EjectMedia"`
	}
}

// cdMedia finds the first CD/DVD virtual media slot, looking under the manager first (where most
// BMCs put it) and then under the system (where newer Redfish versions put it).
func (c *Client) cdMedia(ctx context.Context) (*virtualMedia, string, error) {
	var cols []string
	if mp, err := c.managerPath(ctx); err == nil {
		var m manager
		if _, err := c.get(ctx, mp, &m); err == nil && m.VirtualMedia.ID != "" {
			cols = append(cols, m.VirtualMedia.ID)
		}
	}
	s, _, err := c.getSystem(ctx)
	if err != nil {
		return nil, "", err
	}
	if s.VirtualMedia.ID != "" {
		cols = append(cols, s.VirtualMedia.ID)
	}
	for _, col := range cols {
		ms, err := c.members(ctx, col)
		if err != nil {
			continue
		}
		for _, mp := range ms {
			var vm virtualMedia
			etag, err := c.get(ctx, mp, &vm)
			if err != nil {
				return nil, "", err
			}
			if vm.ID == "" {
				vm.ID = mp
			}
			if slices.Contains(vm.MediaTypes, "CD") || slices.Contains(vm.MediaTypes, "DVD") {
				return &vm, etag, nil
			}
		}
	}
	return nil, "", fmt.Errorf("redfish: %s has no CD/DVD virtual media", c.base.Host)
}

// InsertMedia mounts image (a URL the BMC can fetch) as virtual CD and verifies it is inserted.
func (c *Client) InsertMedia(ctx context.Context, image string) error {
	vm, etag, err := c.cdMedia(ctx)
	if err != nil {
		return err
	}
	if vm.Inserted && vm.Image != nil && *vm.Image == image {
		return nil
	}
	if vm.Inserted {
		// BMCs refuse to insert over a mounted image.
		if err := c.eject(ctx, vm, etag); err != nil {
			return err
		}
		if _, etag, err = c.cdMediaAt(ctx, vm.ID); err != nil {
			return err
		}
	}
	if t := vm.Actions.Insert.Target; t != "" {
		_, err = c.call(ctx, http.MethodPost, t, map[string]any{"Image": image, "Inserted": true, "WriteProtected": true}, nil)
	} else {
		err = c.patch(ctx, vm.ID, etag, map[string]any{"Image": image, "Inserted": true})
	}
	if err != nil && !ambiguous(err) {
		return fmt.Errorf("redfish: insert media %s: %w", image, err)
	}
	// After a lost answer the read below decides: inserting is done when the image is there.
	postErr := err
	got, _, err := c.cdMediaAt(ctx, vm.ID)
	if err != nil {
		return errors.Join(postErr, err)
	}
	if !got.Inserted || got.Image == nil || *got.Image != image {
		if postErr != nil {
			return fmt.Errorf("redfish: insert media %s: %w", image, postErr)
		}
		return fmt.Errorf("redfish: insert media did not take: %s shows Inserted=%v Image=%v", vm.ID, got.Inserted, deref(got.Image))
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

func (c *Client) cdMediaAt(ctx context.Context, p string) (*virtualMedia, string, error) {
	var vm virtualMedia
	etag, err := c.get(ctx, p, &vm)
	if vm.ID == "" {
		vm.ID = p
	}
	return &vm, etag, err
}

// EjectMedia unmounts the virtual CD; ejecting an empty drive is not an error.
func (c *Client) EjectMedia(ctx context.Context) error {
	vm, etag, err := c.cdMedia(ctx)
	if err != nil {
		return err
	}
	if !vm.Inserted {
		return nil
	}
	return c.eject(ctx, vm, etag)
}

func (c *Client) eject(ctx context.Context, vm *virtualMedia, etag string) error {
	var err error
	if t := vm.Actions.Eject.Target; t != "" {
		_, err = c.call(ctx, http.MethodPost, t, map[string]any{}, nil)
	} else {
		err = c.patch(ctx, vm.ID, etag, map[string]any{"Image": nil, "Inserted": false})
	}
	if err != nil && ambiguous(err) {
		// The answer was lost: ejecting is done when the drive reads empty.
		if got, _, rerr := c.cdMediaAt(ctx, vm.ID); rerr == nil && !got.Inserted {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("redfish: eject media: %w", err)
	}
	return nil
}
