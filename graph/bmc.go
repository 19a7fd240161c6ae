package graph

import (
	"context"
	"strings"

	"github.com/prybar/prybar/ent"
	entbmc "github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/graph/model"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish"
)

// bmcSystems asks a Redfish BMC for its systems. Failures that are the BMC's or the input's are
// payload errors (the query itself worked); only database failures are top-level errors.
func (r *Resolver) bmcSystems(ctx context.Context, bmcID int) (*model.BMCSystemsPayload, error) {
	out := &model.BMCSystemsPayload{Systems: []*model.BMCSystem{}, Errors: []*domain.Error{}}
	fail := func(field string, code domain.Code, format string, args ...any) (*model.BMCSystemsPayload, error) {
		out.Errors = append(out.Errors, domain.Errorf(field, code, format, args...))
		return out, nil
	}
	b, err := r.client.BMC.Get(ctx, bmcID)
	switch {
	case ent.IsNotFound(err):
		return fail("bmcID", domain.NotFound, "BMC %d does not exist", bmcID)
	case err != nil:
		return nil, err
	case b.Protocol != entbmc.ProtocolREDFISH:
		return fail("bmcID", domain.Invalid, "BMC %d speaks %s, which drives one system per BMC; listing systems needs Redfish", bmcID, b.Protocol)
	}
	pw, err := secret.OpenIfSealed(r.store.SecretKey, b.Password)
	if err != nil {
		return fail("bmcID", domain.Unavailable, "the password of BMC %d cannot be opened (is --secret-key-file the key it was sealed with?)", bmcID)
	}
	ep := bmc.Endpoint{Protocol: "redfish", Address: b.Address, Port: b.Port, Scheme: b.Scheme, Insecure: b.Insecure,
		Username: b.Username, Password: pw}
	var systems []redfish.System
	err = redfish.WithSession(ctx, ep, func(c *redfish.Client) error {
		var err error
		systems, err = c.Systems(ctx)
		return err
	}, r.redfishOpts...)
	if err != nil {
		return fail("bmcID", domain.Unavailable, "BMC %d (%s): %v", bmcID, b.Address, err)
	}
	want := strings.TrimSuffix(b.SystemID, "/")
	for _, s := range systems {
		ms := &model.BMCSystem{ID: s.ID, Path: s.Path, Name: s.Name, SystemType: s.SystemType,
			Manufacturer: s.Manufacturer, Model: s.Model, SerialNumber: s.SerialNumber, UUID: s.UUID,
			HostName: s.HostName}
		switch s.PowerState {
		case bmc.PowerOn:
			ms.PowerState = ptr(model.PowerStateOn)
		case bmc.PowerOff:
			ms.PowerState = ptr(model.PowerStateOff)
		}
		ms.Selected = (want == "" && len(systems) == 1) || (want != "" && (s.ID == want || strings.TrimSuffix(s.Path, "/") == want))
		out.Systems = append(out.Systems, ms)
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }
