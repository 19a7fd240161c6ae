package events

import (
	"context"
	"fmt"
	"time"
)

// Emit appends an event that is not a row change (a DHCP lease decision, a rogue server, a TFTP
// transfer, a boot script fetched …) to the transaction running under ctx (an events.Tx), so it
// commits with that transaction's writes and gets a seq like every other event.
// objectType/objectID name what it is about. machineID, when not nil, places the event on that
// machine and, like a change of the machine, on its rack and site; nil leaves it unlocated.
func Emit(ctx context.Context, kind, objectType string, objectID int, machineID *int, changes map[string]any) error {
	return EmitAt(ctx, time.Now(), kind, objectType, objectID, machineID, changes)
}

// EmitAt is Emit for something that happened at a given time before the transaction that records
// it (the DHCP server writes an offer's event with the next batch it commits). The event's time is
// at; its seq is still its commit's.
func EmitAt(ctx context.Context, at time.Time, kind, objectType string, objectID int, machineID *int, changes map[string]any) error {
	return emit(ctx, &pending{kind: kind, objectType: objectType, objectID: objectID, changes: changes, at: at}, machineID)
}

// EmitJSONAt is EmitAt with the changes already encoded as a JSON object (nil: none), for a
// writer that records many events of one shape (the DHCP server's lease events) and encodes
// them without building a map for each. changes must be what encoding/json would give for the
// equivalent map: keys sorted, the same escaping.
func EmitJSONAt(ctx context.Context, at time.Time, kind, objectType string, objectID int, machineID *int, changes []byte) error {
	return emit(ctx, &pending{kind: kind, objectType: objectType, objectID: objectID, raw: changes, at: at}, machineID)
}

func emit(ctx context.Context, p *pending, machineID *int) error {
	buf, _ := ctx.Value(bufferKey).(*buffer)
	if buf == nil {
		return fmt.Errorf("%w: emit %s", ErrNoTx, p.kind)
	}
	p.actor = Actor(ctx)
	if machineID != nil {
		// Located at flush, with the other events, as the machine is.
		p.locType, p.locID = "machine", *machineID
	} else {
		p.located = true
	}
	buf.add(p)
	return nil
}
