// Package sessionjournal keeps the Redfish session journal in the database (ent BMCSession), so
// that the sessions a crashed server held are logged out when it starts again:
//
//	j := sessionjournal.New(st, log)
//	redfish.LogoutStale(ctx, j)                   // at start-up, before any client runs
//	redfish.New(ep, redfish.WithSessionJournal(j)) // every client of the server
//
// Session tokens are stored sealed with the server's secret key (internal/secret); without a
// key no token is stored and LogoutStale logs out with the BMC record's credentials instead.
package sessionjournal

import (
	"context"
	"log/slog"
	"os"

	"github.com/prybar/prybar/ent"
	entbmc "github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/bmcsession"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish"
)

// Journal is a redfish.SessionJournal over the store.
type Journal struct {
	client *ent.Client
	key    []byte
	log    *slog.Logger
	owner  string
}

var _ redfish.SessionJournal = (*Journal)(nil)

// New returns the journal of st for this host; log receives journal write failures (nil:
// slog.Default()). Records carry the host name, and Open lists only this host's: servers sharing
// a database must not log out each other's live sessions.
func New(st *store.Store, log *slog.Logger) *Journal {
	host, _ := os.Hostname()
	return NewOwned(st, log, host)
}

// NewOwned is New with an explicit owner (tests, or several servers on one host: give each its
// own stable name).
func NewOwned(st *store.Store, log *slog.Logger, owner string) *Journal {
	if log == nil {
		log = slog.Default()
	}
	return &Journal{client: st.Client, key: st.SecretKey, log: log, owner: owner}
}

// Opened records a session.
func (j *Journal) Opened(ctx context.Context, r redfish.SessionRecord) {
	token := ""
	if j.key != nil && r.Token != "" {
		var err error
		if token, err = secret.Seal(j.key, r.Token); err != nil {
			j.log.Warn("redfish session journal: cannot seal the session token; logout will use the BMC credentials", "bmc", r.Endpoint.Address, "err", err)
			token = ""
		}
	}
	err := j.client.BMCSession.Create().SetOwner(j.owner).
		SetAddress(r.Endpoint.Address).SetPort(r.Endpoint.Port).SetScheme(schemeOf(r.Endpoint)).
		SetInsecure(r.Endpoint.Insecure).SetUsername(r.Endpoint.Username).SetURI(r.URI).SetToken(token).
		SetCreatedAt(r.Created).Exec(ctx)
	// A constraint error means the session is recorded already (a late-answer cleanup that
	// failed records it again): nothing is lost.
	if err != nil && !ent.IsConstraintError(err) {
		j.log.Warn("redfish session journal: cannot record a session; a crash now would leave it open", "bmc", r.Endpoint.Address, "uri", r.URI, "err", err)
	}
}

// Closed forgets a session.
func (j *Journal) Closed(ctx context.Context, ep bmc.Endpoint, uri string) {
	_, err := j.client.BMCSession.Delete().
		Where(bmcsession.Owner(j.owner), bmcsession.Address(ep.Address), bmcsession.Port(ep.Port), bmcsession.URI(uri)).Exec(ctx)
	if err != nil {
		j.log.Warn("redfish session journal: cannot forget a closed session", "bmc", ep.Address, "uri", uri, "err", err)
	}
}

// Open lists the recorded sessions, each with its token opened and the password of the BMC record
// at that address (when there is one), for LogoutStale.
func (j *Journal) Open(ctx context.Context) ([]redfish.SessionRecord, error) {
	rows, err := j.client.BMCSession.Query().Where(bmcsession.Owner(j.owner)).Order(ent.Asc(bmcsession.FieldID)).All(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]redfish.SessionRecord, 0, len(rows))
	for _, r := range rows {
		ep := bmc.Endpoint{Protocol: "redfish", Address: r.Address, Port: r.Port, Scheme: r.Scheme, Insecure: r.Insecure, Username: r.Username}
		rec := redfish.SessionRecord{Endpoint: ep, URI: r.URI, Created: r.CreatedAt}
		if r.Token != "" {
			if tok, err := secret.OpenIfSealed(j.key, r.Token); err == nil {
				rec.Token = tok
			} else {
				j.log.Warn("redfish session journal: cannot open a stored session token (another secret key?)", "bmc", r.Address, "uri", r.URI, "err", err)
			}
		}
		// The record's port may be normalised (443) where the BMC record says 0, or the reverse.
		b, err := j.client.BMC.Query().Where(entbmc.Address(r.Address), entbmc.Or(entbmc.Port(r.Port), entbmc.Port(0), entbmc.PortIsNil())).
			Order(ent.Desc(entbmc.FieldPort)).First(ctx)
		if err == nil && b.Password != "" {
			if pw, err := secret.OpenIfSealed(j.key, b.Password); err == nil {
				rec.Endpoint.Password = pw
			}
		}
		out = append(out, rec)
	}
	return out, nil
}

func schemeOf(ep bmc.Endpoint) string {
	if ep.Scheme == "" {
		return "https"
	}
	return ep.Scheme
}
