package agent

// The agent protocol (JSON over HTTP, all under /agent/):
//
//	POST /agent/register   Bearer <boot token>     Register → Registered
//	GET  /agent/work       Bearer <session token>  ?wait=SECONDS&have=ID,ID → 200 Task | 204
//	POST /agent/output     Bearer <session token>  ?task=ID&offset=N, body = output bytes
//	POST /agent/result     Bearer <session token>  Result → 200 | 409 (already recorded)
//
// A boot token comes from the kernel command line; register answers with a session token scoped to
// the machine the server matched and to this boot.

// Register is the body of POST /agent/register.
type Register struct {
	Trace     string    `json:"trace,omitempty"`
	BootMAC   string    `json:"bootMac,omitempty"`
	Inventory Inventory `json:"inventory"`
}

// Registered is the answer to a registration.
type Registered struct {
	Machine int    `json:"machine"`
	Name    string `json:"name"`
	Created bool   `json:"created"`
	Session string `json:"session"`
	// Drift is the difference between the machine's planned inventory and the report (empty: none).
	Drift map[string]any `json:"drift,omitempty"`
}

// Task kinds.
const (
	KindScript   = "SCRIPT"
	KindReboot   = "REBOOT"
	KindPoweroff = "POWEROFF"
	KindKexec    = "KEXEC"
)

// Task is one piece of work handed to the agent.
type Task struct {
	ID             int    `json:"id"`
	Name           string `json:"name"`
	Kind           string `json:"kind"`
	Script         string `json:"script,omitempty"`
	TimeoutSeconds int    `json:"timeoutSeconds"`
}

// Result reports how a task ended. ResultID is chosen by the agent once per task run and sent
// unchanged on every retry: the server applies a result once and answers a repeat with 409.
type Result struct {
	Task     int    `json:"task"`
	ResultID string `json:"resultId"`
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
	// Output is the tail of the output when streaming could not deliver all of it.
	Output string `json:"output,omitempty"`
	// OutputOffset is where Output starts in the task's whole output.
	OutputOffset int64 `json:"outputOffset,omitempty"`
}

// MaxReport bounds every request body the server accepts (a registration, a result, an output
// chunk): an inventory is a few kilobytes.
const MaxReport = 1 << 20
