package redfish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prybar/prybar/provision/bmc"
)

// SessionRecord is one Redfish session a client opened, as kept by a SessionJournal.
type SessionRecord struct {
	// Endpoint is the BMC. A journal keeps Address, Port, Scheme, Insecure and Username; it may
	// fill Password when it hands records back (LogoutStale uses it when Token is empty or
	// refused), but it must never store the password itself.
	Endpoint bmc.Endpoint
	URI      string // the session resource, e.g. /redfish/v1/SessionService/Sessions/7
	// Token is the session's X-Auth-Token. A journal that cannot store it sealed may drop it:
	// LogoutStale then logs out with the BMC credentials (Basic auth) instead.
	Token   string
	Created time.Time
}

// SessionJournal records the sessions clients hold, so that a process that dies without logging
// out (crash, kill -9, power loss) can log them out when it starts again: BMC session tables hold
// a handful of sessions and a leaked one occupies its slot until the BMC's idle timeout.
//
// Opened and Closed are called by the client after the BMC created or deleted a session; their
// errors are not returned to the client's caller (the BMC operation itself succeeded), so a
// journal should log its own failures.
type SessionJournal interface {
	Opened(ctx context.Context, rec SessionRecord)
	Closed(ctx context.Context, ep bmc.Endpoint, uri string)
	// Open lists the sessions recorded as open.
	Open(ctx context.Context) ([]SessionRecord, error)
}

func (c *Client) journalOpened(ctx context.Context, uri, token string) {
	if c.cfg.journal == nil {
		return
	}
	ep := c.ep
	ep.Password = ""
	c.cfg.journal.Opened(context.WithoutCancel(ctx), SessionRecord{Endpoint: ep, URI: uri, Token: token, Created: time.Now()})
}

func (c *Client) journalClosed(ctx context.Context, uri string) {
	if c.cfg.journal == nil {
		return
	}
	ep := c.ep
	ep.Password = ""
	c.cfg.journal.Closed(context.WithoutCancel(ctx), ep, uri)
}

// LogoutStale logs out every session j lists as open: call it once at start-up, before any
// client of this process opens sessions, to free the sessions a previous run left behind. A
// session the BMC no longer knows counts as logged out. Each logout uses the session's own token
// and falls back to Basic auth with the record's credentials (when the journal supplies a
// password). Sessions on BMCs that cannot be reached stay in the journal for the next start;
// their errors are joined into err. opts configure the clients (timeouts, HTTP client).
func LogoutStale(ctx context.Context, j SessionJournal, opts ...Option) (loggedOut int, err error) {
	recs, err := j.Open(ctx)
	if err != nil {
		return 0, fmt.Errorf("redfish: list stale sessions: %w", err)
	}
	return LogoutSessions(ctx, j, recs, opts...)
}

// LogoutSessions is LogoutStale for records already listed: a server lists them (j.Open) before
// its own clients start, then logs them out in the background so that dead BMCs do not delay its
// start-up, without ever touching a session it opened itself.
func LogoutSessions(ctx context.Context, j SessionJournal, recs []SessionRecord, opts ...Option) (loggedOut int, err error) {
	var errs []error
	for _, r := range recs {
		c := New(r.Endpoint, append(opts, WithSessionJournal(j))...)
		lerr := c.logoutStale(ctx, r)
		c.hc.CloseIdleConnections()
		if lerr != nil {
			errs = append(errs, fmt.Errorf("redfish: log out stale session %s on %s: %w", r.URI, c.base.Host, lerr))
			continue
		}
		loggedOut++
	}
	return loggedOut, errors.Join(errs...)
}

func (c *Client) logoutStale(ctx context.Context, r SessionRecord) error {
	lctx, cancel := context.WithTimeout(ctx, c.cfg.logoutTimeout)
	defer cancel()
	if r.Token != "" {
		_, err := c.send(lctx, http.MethodDelete, r.URI, nil, nil, creds{mode: authSession, token: r.Token}, false)
		st := statusOf(err)
		switch {
		case err == nil || st == http.StatusNotFound:
			c.journalClosed(ctx, r.URI)
			return nil
		case st != http.StatusUnauthorized || r.Endpoint.Password == "":
			// A 401 with the session's own token means the token is dead, which usually means
			// the session is too; only Basic auth can say for sure.
			if st == http.StatusUnauthorized {
				c.journalClosed(ctx, r.URI)
				return nil
			}
			return err
		}
	} else if r.Endpoint.Password == "" {
		return errors.New("the journal holds neither the session token nor the BMC password")
	}
	_, err := c.send(lctx, http.MethodDelete, r.URI, nil, nil, creds{mode: authBasic}, false)
	if err == nil || statusOf(err) == http.StatusNotFound {
		c.journalClosed(ctx, r.URI)
		return nil
	}
	return err
}
