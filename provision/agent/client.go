package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client talks to the server's /agent/ endpoints.
type Client struct {
	Base  string // e.g. http://10.0.0.1:8080
	Token string // the boot token
	HTTP  *http.Client
	Log   *slog.Logger
	// Backoff bounds the retry delay (default 5 s); the first delay is 200 ms, doubling, each with
	// ±50 % jitter so a fleet restarting together does not hammer the server in step.
	Backoff time.Duration

	session string
	// idle is the Retry-After of the last empty work answer: the server holds too many polls
	// and asks this agent to come back later.
	idle time.Duration
}

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("server answered %d: %s", e.Status, e.Body) }

// retryable: network errors and 5xx are retried; 4xx are final (the server refused the request
// as such, and repeating it cannot help).
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status >= 500 || he.Status == http.StatusTooManyRequests
	}
	return true
}

func (c *Client) httpc() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Client) do(ctx context.Context, method, path, tok string, body []byte, out any) (int, error) {
	status, _, err := c.doH(ctx, method, path, tok, body, out)
	return status, err
}

// doH is do, also returning the answer's headers.
func (c *Client) doH(ctx context.Context, method, path, tok string, body []byte, out any) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpc().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxReport))
	if resp.StatusCode >= 300 {
		return resp.StatusCode, resp.Header, &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("bad answer from %s: %w", path, err)
		}
	}
	return resp.StatusCode, resp.Header, nil
}

// retry calls f until it succeeds, fails with a final error, or ctx ends.
func (c *Client) retry(ctx context.Context, what string, f func() error) error {
	max := c.Backoff
	if max <= 0 {
		max = 5 * time.Second
	}
	delay := 200 * time.Millisecond
	for {
		err := f()
		if err == nil || !retryable(err) {
			return err
		}
		j := time.Duration(float64(delay) * (0.5 + mrand.Float64()))
		c.log().Warn("retrying", "what", what, "in", j.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(j):
		}
		delay = min(delay*2, max)
	}
}

// Register reports the inventory (retrying until the server answers) and keeps the session.
func (c *Client) Register(ctx context.Context, r Register) (Registered, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Registered{}, err
	}
	var out Registered
	err = c.retry(ctx, "register", func() error {
		_, err := c.do(ctx, http.MethodPost, "/agent/register", c.Token, body, &out)
		return err
	})
	if err == nil {
		c.session = out.Session
	}
	return out, err
}

// Work long-polls for the next task (nil when none came within wait). have lists the tasks this
// agent already holds, so the server re-sends only a task whose hand-over answer was lost.
func (c *Client) Work(ctx context.Context, wait time.Duration, have []int) (*Task, error) {
	q := url.Values{"wait": {strconv.Itoa(int(wait.Seconds()))}}
	if len(have) > 0 {
		s := make([]string, len(have))
		for i, h := range have {
			s[i] = strconv.Itoa(h)
		}
		q.Set("have", strings.Join(s, ","))
	}
	var t Task
	var status int
	var hdr http.Header
	err := c.retry(ctx, "work", func() error {
		var err error
		status, hdr, err = c.doH(ctx, http.MethodGet, "/agent/work?"+q.Encode(), c.session, nil, &t)
		return err
	})
	c.idle = 0
	if err != nil || status == http.StatusNoContent {
		if s, err := strconv.Atoi(hdr.Get("Retry-After")); err == nil && s > 0 {
			c.idle = min(time.Duration(s)*time.Second, 2*time.Minute)
		}
		return nil, err
	}
	return &t, nil
}

// Idle is how long the server asked this agent to wait before the next Work (0: none).
func (c *Client) Idle() time.Duration { return c.idle }

// Output sends a chunk of a task's output at offset (best effort: the result carries the tail).
func (c *Client) Output(ctx context.Context, task int, offset int64, chunk []byte) error {
	q := fmt.Sprintf("/agent/output?task=%d&offset=%d", task, offset)
	_, err := c.do(ctx, http.MethodPost, q, c.session, chunk, nil)
	return err
}

// Deliver sends a result until the server has it: a 409 answer means an earlier delivery (whose
// answer was lost) already recorded it, which is success too.
func (c *Client) Deliver(ctx context.Context, r Result) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.retry(ctx, "result", func() error {
		_, err := c.do(ctx, http.MethodPost, "/agent/result", c.session, body, nil)
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusConflict {
			return nil
		}
		return err
	})
}

// NewResultID returns a fresh result id.
func NewResultID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Runner runs tasks.
type Runner struct {
	Client *Client
	// Shell runs a script (default /bin/sh -c; the discovery image has no shell of its own, so it
	// passes the u-root one or its builtin).
	Shell []string
	// Exec, when set, runs a script instead of Shell: it writes the output to out and returns the
	// exit code (an error means the script could not run at all). Simulated machines use it.
	Exec func(ctx context.Context, script string, out io.Writer) (exitCode int, err error)
	// Power performs reboot, poweroff and kexec (nil: refuse them).
	Power func(kind string) error
	// ChunkEvery is how often output is streamed (default 1 s).
	ChunkEvery time.Duration
	Log        *slog.Logger

	mu   sync.Mutex
	have []int
}

// Loop registers nothing: call Client.Register first. It asks for work and runs it until ctx
// ends. Every task is run at most once per agent; its result is delivered before the next task is
// asked for.
func (r *Runner) Loop(ctx context.Context) error {
	for ctx.Err() == nil {
		t, err := r.Client.Work(ctx, 25*time.Second, r.held())
		if err != nil {
			return err
		}
		if t == nil {
			if d := r.Client.Idle(); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
			continue
		}
		if r.seen(t.ID) {
			continue
		}
		res := r.Run(ctx, *t)
		if err := r.Client.Deliver(ctx, res); err != nil {
			return fmt.Errorf("deliver result of task %d: %w", t.ID, err)
		}
		if res.ExitCode == 0 && res.Error == "" && t.Kind != KindScript && r.Power != nil {
			if err := r.Power(t.Kind); err != nil {
				r.log().Error("power", "kind", t.Kind, "err", err)
			}
		}
	}
	return ctx.Err()
}

func (r *Runner) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Runner) held() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.have...)
}

// seen records id and reports whether it was already held.
func (r *Runner) seen(id int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.have {
		if h == id {
			return true
		}
	}
	r.have = append(r.have, id)
	return false
}

// streamBuf collects output and remembers how much was already sent.
type streamBuf struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sent int
}

func (s *streamBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len() < MaxReport/2 {
		s.buf.Write(p[:min(len(p), MaxReport/2-s.buf.Len())])
	}
	return len(p), nil
}

func (s *streamBuf) pending() (int64, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.sent), bytes.Clone(s.buf.Bytes()[s.sent:])
}

// ack records n bytes from offset off as delivered; an ack for an offset already passed changes
// nothing, so a chunk can never be counted twice.
func (s *streamBuf) ack(off int64, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int64(s.sent) == off {
		s.sent += n
	}
}

// Run runs one task with its timeout, streaming its output, and returns its result. Power tasks
// succeed at once: the action happens after the result is delivered.
func (r *Runner) Run(ctx context.Context, t Task) Result {
	res := Result{Task: t.ID, ResultID: NewResultID()}
	switch t.Kind {
	case KindReboot, KindPoweroff, KindKexec:
		if r.Power == nil {
			res.ExitCode, res.Error = -1, "this agent cannot "+strings.ToLower(t.Kind)
		}
		return res
	case KindScript, "":
	default:
		res.ExitCode, res.Error = -1, "unknown task kind "+t.Kind
		return res
	}
	timeout := time.Duration(t.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &streamBuf{}
	every := r.ChunkEvery
	if every <= 0 {
		every = time.Second
	}
	flush := func() {
		off, chunk := out.pending()
		if len(chunk) == 0 {
			return
		}
		if err := r.Client.Output(ctx, t.ID, off, chunk); err == nil {
			out.ack(off, len(chunk))
		}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				flush()
			}
		}
	}()
	code, err := r.exec(tctx, t.Script, out)
	close(done)
	<-stopped // a tick's flush may still be in flight: one flush at a time
	flush()
	if off, rest := out.pending(); len(rest) > 0 {
		// Streaming could not deliver this part (server away): the result carries it.
		res.Output, res.OutputOffset = string(rest), off
	}
	switch {
	case tctx.Err() == context.DeadlineExceeded:
		res.ExitCode, res.Error = -1, fmt.Sprintf("timed out after %s", timeout)
	case err != nil:
		res.ExitCode, res.Error = -1, err.Error()
	default:
		res.ExitCode = code
	}
	return res
}

// exec runs script with Exec, else with the shell.
func (r *Runner) exec(ctx context.Context, script string, out io.Writer) (int, error) {
	if r.Exec != nil {
		return r.Exec(ctx, script, out)
	}
	shell := r.Shell
	if len(shell) == 0 {
		shell = []string{"/bin/sh", "-c"}
	}
	cmd := exec.CommandContext(ctx, shell[0], append(shell[1:], script)...)
	cmd.WaitDelay = 2 * time.Second
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}
