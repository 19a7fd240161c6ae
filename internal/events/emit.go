package events

import (
	"context"
	"fmt"
	"time"
)

// Emit appends an event that is not a row change (a DHCP lease decision, a rogue server …) to the
// transaction running under ctx (an events.Tx), so it commits with that transaction's writes.
// machineID, when not nil, places the event on that machine (and its rack and site).
func Emit(ctx context.Context, kind, objectType string, objectID int, machineID *int, changes map[string]any) error {
	buf, _ := ctx.Value(bufferKey).(*buffer)
	if buf == nil {
		return fmt.Errorf("%w: emit %s", ErrNoTx, kind)
	}
	p := &pending{kind: kind, objectType: objectType, objectID: objectID, changes: changes, at: time.Now(), actor: Actor(ctx)}
	if machineID != nil {
		p.loc.machine = machineID
	}
	buf.add(p)
	return nil
}
