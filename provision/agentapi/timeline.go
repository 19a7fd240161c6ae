package agentapi

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
)

// Step is one step of a boot.
type Step struct {
	Kind, What    string
	At            time.Time
	DurationMs    *int
	Status, Error *string
	trace, what0  string
}

// Boot is one network boot of a machine.
type Boot struct {
	Trace string
	Start time.Time
	Steps []Step
}

// DurationMs is the time from the first step's start to the last step's end.
func (b Boot) DurationMs() int {
	if len(b.Steps) == 0 {
		return 0
	}
	end := b.Start
	for _, s := range b.Steps {
		e := s.At
		if s.DurationMs != nil {
			e = e.Add(time.Duration(*s.DurationMs) * time.Millisecond)
		}
		if e.After(end) {
			end = e
		}
	}
	return int(end.Sub(b.Start).Milliseconds())
}

// timelineKinds are the events a boot is made of.
func isBootEvent(kind string) bool {
	return strings.HasPrefix(kind, "boot.") && kind != "boot.done" || strings.HasPrefix(kind, "lease.") ||
		strings.HasPrefix(kind, "dhcp.") || strings.HasPrefix(kind, "agent.") ||
		kind == "machine.discovered" || kind == "machine.drift" || kind == "boot.done"
}

// maxTimelineEvents bounds the events read for a timeline (the newest ones).
const maxTimelineEvents = 2000

// Timeline returns machine id's last boots, newest first. Events are ordered by their step's
// start; a boot begins at a DHCP exchange or a script fetch that follows a boot already past its
// script, or at an agent check-in with a new trace.
func Timeline(ctx context.Context, c *ent.Client, id, last int) ([]Boot, error) {
	if last <= 0 {
		return []Boot{}, nil
	}
	evs, err := c.Event.Query().Where(event.MachineID(id)).Order(ent.Desc(event.FieldSeq)).Limit(maxTimelineEvents).All(ctx)
	if err != nil {
		return nil, err
	}
	var steps []Step
	for _, e := range evs {
		if !isBootEvent(e.Kind) {
			continue
		}
		steps = append(steps, toStep(e))
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At.Before(steps[j].At) })
	var boots []Boot
	cur := -1
	hasScript, hasAgent := false, false
	isDHCP := func(s Step) bool { return strings.HasPrefix(s.Kind, "lease.") || strings.HasPrefix(s.Kind, "dhcp.") }
	for _, s := range steps {
		dhcp := isDHCP(s)
		script := s.Kind == "boot.http" && s.what0 == "script"
		newTrace := s.trace != "" && cur >= 0 && boots[cur].Trace != "" && boots[cur].Trace != s.trace
		// One boot: firmware DHCP, script, kernel, initrd, the agent's own DHCP, check-in, tasks.
		// The next boot starts with DHCP after a check-in, or with a second script fetch (a boot
		// that never reached the agent): then the DHCP steps just before it move along.
		if cur < 0 || (dhcp && hasAgent) || (script && hasScript) || (s.Kind == "agent.registered" && (hasAgent || newTrace)) {
			var carry []Step
			if cur >= 0 && script {
				prev := boots[cur].Steps
				i := len(prev)
				for i > 0 && isDHCP(prev[i-1]) {
					i--
				}
				carry, boots[cur].Steps = slices.Clone(prev[i:]), prev[:i]
			}
			b := Boot{Start: s.At, Steps: carry}
			if len(carry) > 0 {
				b.Start = carry[0].At
			}
			boots = append(boots, b)
			cur = len(boots) - 1
			hasScript, hasAgent = false, false
		}
		hasScript = hasScript || script
		hasAgent = hasAgent || s.Kind == "agent.registered"
		if boots[cur].Trace == "" && s.trace != "" {
			boots[cur].Trace = s.trace
		}
		boots[cur].Steps = append(boots[cur].Steps, s)
	}
	// A boot left empty by carrying its DHCP steps on (it had only those) is dropped.
	boots = slices.DeleteFunc(boots, func(b Boot) bool { return len(b.Steps) == 0 })
	slices.Reverse(boots)
	if len(boots) > last {
		boots = boots[:last]
	}
	return boots, nil
}

func toStep(e *ent.Event) Step {
	ch := e.Changes
	str := func(k string) string {
		if v, ok := ch[k]; ok && v != nil {
			return fmt.Sprint(v)
		}
		return ""
	}
	s := Step{Kind: e.Kind, At: e.Time, trace: str("trace"), what0: str("what")}
	if t, err := time.Parse(time.RFC3339Nano, str("start")); err == nil {
		s.At = t
	}
	switch {
	case str("step") != "":
		s.What = str("step")
	case str("asset") != "":
		s.What = str("asset")
	case str("file") != "":
		s.What = str("file")
	case str("what") != "":
		s.What = str("what")
	default:
		s.What = strings.TrimPrefix(strings.TrimPrefix(e.Kind, "boot."), "agent.")
	}
	if d, ok := ch["duration_ms"].(float64); ok {
		n := int(d)
		s.DurationMs = &n
	}
	for _, k := range []string{"status", "state"} {
		if v := str(k); v != "" {
			s.Status = &v
			break
		}
	}
	if v := str("error"); v != "" {
		s.Error = &v
	}
	return s
}
