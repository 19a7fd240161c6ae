package events

import (
	"context"
	"errors"
	"time"
)

// ErrNoBuffer is returned by Emit outside Recorder.Tx.
var ErrNoBuffer = errors.New("events: Emit outside events.Tx")

// Emit records an event that is not a row change — a TFTP transfer, a boot script fetched, a DHCP
// decision — in the transaction of ctx (which must come from Recorder.Tx); it is appended with
// the row changes at commit, so it gets a seq like every other event and reaches subscribers.
// objectType/objectID name what it is about ("machine", 42); when objectType is "machine" the
// event is located (site, rack, machine) like a machine change. With objectID 0 it is about no
// stored object (an unknown client) and carries no location.
func Emit(ctx context.Context, kind, objectType string, objectID int, changes map[string]any) error {
	buf, _ := ctx.Value(bufferKey).(*buffer)
	if buf == nil {
		return ErrNoBuffer
	}
	p := &pending{kind: kind, objectType: objectType, objectID: objectID, changes: changes,
		at: time.Now(), actor: Actor(ctx)}
	if objectID == 0 {
		p.located = true
	}
	buf.add(p)
	return nil
}
