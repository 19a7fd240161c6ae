package events

import (
	"log/slog"
	"sync"

	"github.com/prybar/prybar/ent"
)

// Hub wakes waiting readers when new events may be visible. It carries no data: readers always
// read the table, so a missed or duplicated poke costs at most one query.
type Hub struct {
	mu   sync.Mutex
	ch   chan struct{}
	tail *Tail
}

// NewHub returns a hub with no waiters.
func NewHub() *Hub { return &Hub{ch: make(chan struct{})} }

// Wait returns a channel closed by the next Poke.
func (h *Hub) Wait() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ch
}

// Poke wakes every current waiter.
func (h *Hub) Poke() {
	h.mu.Lock()
	close(h.ch)
	h.ch = make(chan struct{})
	h.mu.Unlock()
}

// Tail returns the hub's shared tail over client, created on first use: all subscriptions of a
// server share one reader.
func (h *Hub) Tail(client *ent.Client, log *slog.Logger) *Tail {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tail == nil {
		h.tail = NewTail(client, h, log)
	}
	return h.tail
}
