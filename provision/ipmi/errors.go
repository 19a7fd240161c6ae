package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/bougou/go-ipmi/pkg/types"
)

// ErrBootVerify is wrapped by SetBootDevice when the boot flags read back differ from what
// was written: the BMC accepted the command but will not boot as asked.
var ErrBootVerify = errors.New("ipmi: boot flags read back do not match")

// ErrTimeout is wrapped into errors of calls whose last attempt got no answer in time, so
// callers can tell "BMC silent" from "BMC refused" without knowing go-ipmi's error texts.
var ErrTimeout = errors.New("ipmi: no answer from BMC in time")

// Error is every error the Client returns: it names the BMC and the operation so that a
// failure in a fleet-wide run can be traced to one machine without extra context.
type Error struct {
	Addr     string // host:port of the BMC
	Op       string // e.g. "power on", "power state", "set boot device pxe"
	Attempts int    // attempts made (1 = no retry)
	Err      error
}

func (e *Error) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("ipmi %s: %s: %v (after %d attempts)", e.Addr, e.Op, e.Err, e.Attempts)
	}
	return fmt.Sprintf("ipmi %s: %s: %v", e.Addr, e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// CompletionCode returns the IPMI completion code when the BMC answered with an error, and
// false when the failure was local or on the wire.
func CompletionCode(err error) (uint8, bool) {
	if re, ok := types.IsResponseError(err); ok {
		return uint8(re.CompletionCode()), true
	}
	return 0, false
}

// unknownPower wraps a PowerState failure so that errors.Is matches both the contract's
// ErrUnknownPowerState and the underlying cause (timeout, completion code, ...).
type unknownPower struct {
	sentinel error
	cause    error
}

func (u *unknownPower) Error() string   { return u.sentinel.Error() + ": " + u.cause.Error() }
func (u *unknownPower) Unwrap() []error { return []error{u.sentinel, u.cause} }

// retryable reports whether another attempt may succeed. The BMC answering with a completion
// code means it is alive and decided: only "busy"-style codes are worth repeating. Authentication
// failures must not be retried, because real BMCs lock accounts after a few bad logins.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if re, ok := types.IsResponseError(err); ok {
		switch re.CompletionCode() {
		case types.CodeNodeBusy, types.CodeProcessTimeout, types.CodeCannotProvideResponse:
			return true
		}
		return false
	}
	if errors.Is(err, ErrBootVerify) || errors.Is(err, context.Canceled) {
		return false
	}
	return isTransport(err)
}

// isTimeout reports a missing answer (as opposed to a refused connection or a socket error).
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"timed out", "deadline exceeded", "no matching IPMI response", "no datagram matched"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isTransport reports timeouts and socket errors: the session may be dead and must be rebuilt.
func isTransport(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	// go-ipmi flattens the per-cipher-suite session errors with %v, losing the chain; its
	// messages are the only signal left that the handshake timed out rather than was refused.
	msg := err.Error()
	if isTimeout(err) {
		return true
	}
	for _, s := range []string{"connection refused", "UDP exchange error"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
