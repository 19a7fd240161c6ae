package ipmi

import "time"

// Defaults. They follow ipmitool's lanplus behaviour (1 s per datagram, resent a few times)
// but bound every attempt as a whole, because an executor must never hang on one BMC.
const (
	DefaultPort           = 623
	DefaultTimeout        = 5 * time.Second
	DefaultRetries        = 2
	DefaultBackoff        = 250 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	defaultDatagramWait   = time.Second
	defaultDatagramResend = 3
)

type config struct {
	timeout     time.Duration
	retries     int
	backoff     time.Duration
	maxBackoff  time.Duration
	cipherSuite int // -1: negotiate
	coldReset   bool
	verifyBoot  bool
}

func defaultConfig() config {
	return config{
		timeout:     DefaultTimeout,
		retries:     DefaultRetries,
		backoff:     DefaultBackoff,
		maxBackoff:  DefaultMaxBackoff,
		cipherSuite: -1,
		verifyBoot:  true,
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

// WithCipherSuite pins the RMCP+ cipher suite (3 and 17 are the common ones). By default the
// client asks the BMC for its suites and picks the strongest, which costs a few round trips
// per session; pinning avoids them when the fleet's suite is known.
func WithCipherSuite(id int) Option {
	return func(c *config) {
		if id >= 0 && id <= 19 {
			c.cipherSuite = id
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
