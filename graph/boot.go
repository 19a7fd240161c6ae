package graph

import (
	"context"
	"errors"

	"github.com/prybar/prybar/graph/model"
	"github.com/prybar/prybar/provision/ipxe"
)

// bootPreview renders the script machineID would get now. The token in it is issued with an
// empty key, which no server accepts: a preview never hands out a working credential, and nothing
// is recorded.
func (r *Resolver) bootPreview(ctx context.Context, machineID int) (*model.BootScriptPreview, error) {
	h := ipxe.Handler{Backend: &ipxe.DB{Store: r.store, Log: r.log}}
	base := "http://boot.invalid"
	if r.boot != nil {
		h.Backend, h.Now = r.boot.Backend, r.boot.Now
		if r.boot.BaseURL != "" {
			base = r.boot.BaseURL
		}
	}
	script, env, _, err := h.Render(ctx, "", machineID, base)
	out := &model.BootScriptPreview{Bootenv: env, Script: script}
	if errors.Is(err, ipxe.ErrUnknownMachine) {
		return nil, err
	}
	if err != nil {
		msg := err.Error()
		out.Error = &msg
	}
	return out, nil
}
