package ipxe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Tokens issues and checks per-boot tokens: an HMAC over (machine, bootenv, expiry), so nothing is
// stored per boot and every replica sharing the key accepts them. A token names the bootenv it was
// issued for: the completion callback acts only while the machine is still in that bootenv, so a
// token cannot flip a machine that has since been sent elsewhere.
type Tokens struct {
	Key []byte
	TTL time.Duration // default 24h: an OS install can be slow
}

// ErrBadToken is returned for a forged, malformed or expired token.
var ErrBadToken = errors.New("invalid or expired boot token")

var b64 = base64.RawURLEncoding

// Issue returns a token for machine id booting env, valid until now+TTL.
func (t Tokens) Issue(machineID int, env string, now time.Time) string {
	ttl := t.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	payload := fmt.Sprintf("%d|%s|%d", machineID, env, now.Add(ttl).Unix())
	return b64.EncodeToString([]byte(payload)) + "." + b64.EncodeToString(t.mac(payload))
}

// Verify checks tok and returns the machine and bootenv it was issued for.
func (t Tokens) Verify(tok string, now time.Time) (int, string, error) {
	p64, s64, ok := strings.Cut(tok, ".")
	if !ok || len(t.Key) == 0 {
		return 0, "", ErrBadToken
	}
	payload, err1 := b64.DecodeString(p64)
	sig, err2 := b64.DecodeString(s64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, t.mac(string(payload))) {
		return 0, "", ErrBadToken
	}
	parts := strings.Split(string(payload), "|")
	if len(parts) != 3 {
		return 0, "", ErrBadToken
	}
	id, err1 := strconv.Atoi(parts[0])
	exp, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || now.Unix() > exp {
		return 0, "", ErrBadToken
	}
	return id, parts[1], nil
}

func (t Tokens) mac(payload string) []byte {
	h := hmac.New(sha256.New, t.Key)
	h.Write([]byte("prybar boot token\x00"))
	h.Write([]byte(payload))
	return h.Sum(nil)[:16]
}

// AgentScope prefixes the bootenv part of an agent boot token: "agent/<trace>/<mac>". No machine
// is ever in such a bootenv, so /boot/done refuses these tokens; provision/agentapi verifies them.
const AgentScope = "agent/"

// IssueAgent returns the discovery agent's token for one boot: machine id (0 for a machine not yet
// known, then scoped by mac) and the boot's trace id.
func (t Tokens) IssueAgent(id int, mac, trace string, now time.Time) string {
	return t.Issue(id, AgentScope+trace+"/"+mac, now)
}
