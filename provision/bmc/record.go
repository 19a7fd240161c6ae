package bmc

import (
	"fmt"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/secret"
)

// FromRecord is the one conversion from a stored BMC record to the Endpoint every consumer uses
// (the annealer's run input, recovery's rebuilt input, tracked operations). It is also the one
// place a stored password is unsealed: key is the store's secret key (nil when none is
// configured; plain legacy values pass through). A password that cannot be opened is an error
// that names the machine, and the rest of the endpoint is still returned so callers can key
// locks and report on it.
func FromRecord(b *ent.BMC, key []byte) (Endpoint, error) {
	ep := Endpoint{
		Protocol: strings.ToLower(string(b.Protocol)), Address: b.Address, Port: b.Port, Scheme: b.Scheme,
		Insecure: b.Insecure, Username: b.Username, SystemID: b.SystemID,
	}
	pw, err := secret.OpenIfSealed(key, b.Password)
	if err != nil {
		return ep, fmt.Errorf("BMC password of machine %d cannot be opened (is --secret-key-file the key it was sealed with?): %w", b.MachineID, err)
	}
	ep.Password = pw
	return ep, nil
}
