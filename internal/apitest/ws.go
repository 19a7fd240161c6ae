package apitest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// Subscription is one graphql-transport-ws connection carrying one subscription.
type Subscription struct {
	conn   *websocket.Conn
	cancel context.CancelFunc
	// Next yields each "next" payload's data; closed when the connection ends.
	Next <-chan json.RawMessage
	err  error
	// closeStatus is the server's close code once the stream ended (-1: not a close frame).
	closeStatus websocket.StatusCode
}

// CloseStatus is the WebSocket close code the server ended the stream with (-1 when it did not
// close with a code); read it after Next is closed.
func (s *Subscription) CloseStatus() websocket.StatusCode { return s.closeStatus }

type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Subscribe opens a WebSocket to baseURL's /graphql and starts query, authenticated with the test
// server's admin token (TokenFor).
func Subscribe(ctx context.Context, baseURL, query string, vars map[string]any) (*Subscription, error) {
	return SubscribeWith(ctx, baseURL, TokenFor(baseURL), query, vars)
}

// SubscribeWith is Subscribe with token in connection_init (none when empty).
func SubscribeWith(ctx context.Context, baseURL, token, query string, vars map[string]any) (*Subscription, error) {
	ctx, cancel := context.WithCancel(ctx)
	url := "ws" + strings.TrimPrefix(baseURL, "http") + "/graphql"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		cancel()
		return nil, err
	}
	conn.SetReadLimit(16 << 20)
	fail := func(err error) (*Subscription, error) {
		cancel()
		conn.Close(websocket.StatusInternalError, "")
		return nil, err
	}
	init := json.RawMessage(`{}`)
	if token != "" {
		init, _ = json.Marshal(map[string]string{"authorization": "Bearer " + token})
	}
	if err := wsjson.Write(ctx, conn, wsMsg{Type: "connection_init", Payload: init}); err != nil {
		return fail(err)
	}
	var ack wsMsg
	if err := wsjson.Read(ctx, conn, &ack); err != nil || ack.Type != "connection_ack" {
		return fail(fmt.Errorf("no connection_ack (got %q): %v", ack.Type, err))
	}
	payload, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err := wsjson.Write(ctx, conn, wsMsg{ID: "1", Type: "subscribe", Payload: payload}); err != nil {
		return fail(err)
	}
	next := make(chan json.RawMessage, 1024)
	s := &Subscription{conn: conn, cancel: cancel, Next: next}
	go func() {
		defer close(next)
		for {
			var m wsMsg
			if err := wsjson.Read(ctx, conn, &m); err != nil {
				s.closeStatus = websocket.CloseStatus(err)
				return
			}
			switch m.Type {
			case "next":
				var p struct {
					Data   json.RawMessage `json:"data"`
					Errors []any           `json:"errors"`
				}
				_ = json.Unmarshal(m.Payload, &p)
				if len(p.Errors) > 0 {
					s.err = fmt.Errorf("subscription errors: %v", p.Errors)
					return
				}
				select {
				case next <- p.Data:
				case <-ctx.Done():
					return
				}
			case "ping":
				_ = wsjson.Write(ctx, conn, wsMsg{Type: "pong"})
			case "error":
				s.err = fmt.Errorf("subscription error: %s", m.Payload)
				return
			case "complete":
				return
			}
		}
	}()
	return s, nil
}

// Err reports why the stream ended early, if it did.
func (s *Subscription) Err() error { return s.err }

// Close disconnects abruptly, like a client that goes away.
func (s *Subscription) Close() {
	s.cancel()
	s.conn.Close(websocket.StatusNormalClosure, "")
}

// Event is the subset of an event the tests read.
type Event struct {
	Seq       int    `json:"seq"`
	Kind      string `json:"kind"`
	ObjectID  string `json:"objectID"`
	MachineID string `json:"machineID"`
}

// EventsSubscription is the subscription query used by tests and benchmarks.
const EventsSubscription = `subscription($after: Int, $filter: EventFilter) {
  events(after: $after, filter: $filter) { seq kind objectID machineID }
}`

// NextEvent waits up to d for the next event.
func (s *Subscription) NextEvent(d time.Duration) (Event, error) {
	select {
	case data, ok := <-s.Next:
		if !ok {
			return Event{}, fmt.Errorf("stream closed: %v", s.err)
		}
		var v struct {
			Events Event `json:"events"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return Event{}, err
		}
		return v.Events, nil
	case <-time.After(d):
		return Event{}, fmt.Errorf("no event within %s", d)
	}
}
