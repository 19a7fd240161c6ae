package events

import "sync"

// Hub wakes waiting readers when new events may be visible. It carries no data: readers always
// read the table, so a missed or duplicated poke costs at most one query.
type Hub struct {
	mu sync.Mutex
	ch chan struct{}
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
