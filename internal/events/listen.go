package events

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listen turns PostgreSQL NOTIFYs on NotifyChannel (sent by any replica's commits) into pokes of
// hub, reconnecting until ctx ends. Each (re)connection pokes once, since notifications sent while
// disconnected are lost.
func Listen(ctx context.Context, dsn string, hub *Hub, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listenOnce(ctx, dsn, hub)
		if ctx.Err() != nil {
			return
		}
		log.Warn("event listener disconnected; reconnecting", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func listenOnce(ctx context.Context, dsn string, hub *Hub) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	hub.Poke()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		hub.Poke()
	}
}
