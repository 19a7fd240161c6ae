package redfish

import (
	"context"
	"fmt"
	"strings"

	"github.com/prybar/prybar/provision/bmc"
)

// System is one ComputerSystem a BMC manages, as listed for an operator choosing which one a
// machine is (blade chassis managers, SmartNICs with their own SoC and composed systems manage
// several).
type System struct {
	ID           string // the Redfish Id: what bmc.Endpoint.SystemID (the BMC record's systemID) takes
	Path         string // @odata.id
	Name         string
	SystemType   string // Physical, Virtual, Composed, DPU…
	Manufacturer string
	Model        string
	SerialNumber string
	UUID         string
	HostName     string
	PowerState   bmc.PowerState // "" when the BMC reports no usable state
	Health       string
}

// Systems lists every system the BMC manages, whatever the endpoint's SystemID says.
func (c *Client) Systems(ctx context.Context) ([]System, error) {
	ms, _, err := c.systemMembers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]System, 0, len(ms))
	for _, m := range ms {
		var s computerSystem
		if _, err := c.get(ctx, m, &s); err != nil {
			return nil, fmt.Errorf("redfish: read system %s: %w", m, err)
		}
		sys := System{ID: s.RID, Path: m, Name: s.Name, SystemType: s.SystemType, Manufacturer: s.Manufacturer,
			Model: s.Model, SerialNumber: s.SerialNumber, UUID: s.UUID, HostName: s.HostName}
		if sys.ID == "" {
			sys.ID = lastSegment(m)
		}
		if ps, err := mapPowerState(s.PowerState); err == nil {
			sys.PowerState = ps
		}
		out = append(out, sys)
	}
	return out, nil
}

// SystemID is the Redfish Id of the system the client drives: the endpoint's SystemID, or the
// only system of the BMC. A BMC with several systems and no SystemID is an error naming them.
func (c *Client) SystemID(ctx context.Context) (string, error) {
	p, err := c.system(ctx)
	if err != nil {
		return "", err
	}
	return lastSegment(p), nil
}

func (c *Client) systemMembers(ctx context.Context) ([]string, string, error) {
	root, err := c.serviceRoot(ctx)
	if err != nil {
		return nil, "", err
	}
	col := root.Systems.ID
	if col == "" {
		col = "/redfish/v1/Systems"
	}
	ms, err := c.members(ctx, col)
	return ms, col, err
}

// systemChoices names the systems for an error message: "Blade1 (Blade 1, serial X), …".
func (c *Client) systemChoices(ctx context.Context, ms []string) string {
	var parts []string
	for _, m := range ms {
		var s computerSystem
		part := lastSegment(m)
		if _, err := c.get(ctx, m, &s); err == nil {
			var extra []string
			if s.Name != "" {
				extra = append(extra, s.Name)
			}
			if s.SerialNumber != "" {
				extra = append(extra, "serial "+s.SerialNumber)
			}
			if len(extra) > 0 {
				part += " (" + strings.Join(extra, ", ") + ")"
			}
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}
