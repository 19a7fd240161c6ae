package ipmi

import "time"

// Defaults. Every attempt is bounded as a whole, because an executor must never hang on one
// BMC; the worst case of a call is (1+DefaultRetries) x DefaultTimeout plus backoff, ~16 s.
const (
	DefaultPort       = 623
	DefaultTimeout    = 5 * time.Second
	DefaultRetries    = 2
	DefaultBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
)

// DefaultCipherSuites are tried in order when none is pinned. Suite 3 (HMAC-SHA1, AES-128) is
// what nearly every BMC and ipmi_sim accept; 17 (HMAC-SHA256) is the fallback for hardened
// BMCs that refuse 3. Asking the BMC for its list instead costs extra round trips, and BMCs
// that list a suite but silently ignore it (ipmi_sim does with 17) turn that into timeouts.
var DefaultCipherSuites = []int{3, 17}

type config struct {
	timeout      time.Duration
	retries      int
	backoff      time.Duration
	maxBackoff   time.Duration
	cipherSuites []int
	coldReset    bool
	verifyBoot   bool
}

func defaultConfig() config {
	return config{
		timeout:      DefaultTimeout,
		retries:      DefaultRetries,
		backoff:      DefaultBackoff,
		maxBackoff:   DefaultMaxBackoff,
		cipherSuites: DefaultCipherSuites,
		verifyBoot:   true,
	}
}

// Option configures a Client.
type Option func(*config)

// WithTimeout bounds one attempt of one call (session setup included). Values <= 0 keep the default.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithRetries sets how many extra attempts a call makes after a timeout or transport error.
// 0 disables retrying. Negative values keep the default.
func WithRetries(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.retries = n
		}
	}
}

// WithBackoff sets the pause before the first retry and its cap; the pause doubles per retry.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) {
		if initial > 0 {
			c.backoff = initial
		}
		if max > 0 {
			c.maxBackoff = max
		}
		if c.maxBackoff < c.backoff {
			c.maxBackoff = c.backoff
		}
	}
}

// WithCipherSuite sets the RMCP+ cipher suites to try, in order (ids 0..19; others are
// ignored). Pin 17 for fleets that support it: it is the stronger suite.
func WithCipherSuite(ids ...int) Option {
	return func(c *config) {
		var ok []int
		for _, id := range ids {
			if id >= 0 && id <= 19 {
				ok = append(ok, id)
			}
		}
		if len(ok) > 0 {
			c.cipherSuites = ok
		}
	}
}

// WithColdBMCReset makes ResetBMC issue a cold reset (App 0x02) instead of a warm one (App 0x03).
// Some BMCs implement only one of the two; the fleet inventory decides which.
func WithColdBMCReset() Option {
	return func(c *config) { c.coldReset = true }
}

// WithoutBootVerify skips reading the boot flags back after SetBootDevice. Use it only for
// BMCs known to answer Get System Boot Options with stale or garbled data.
func WithoutBootVerify() Option {
	return func(c *config) { c.verifyBoot = false }
}
