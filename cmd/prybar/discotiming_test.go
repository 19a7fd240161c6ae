package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/internal/store"
)

// consoleLine is one line a VM wrote on a character device, with the host time it arrived.
type consoleLine struct {
	at   time.Time
	text string
}

// consoleCapture receives a QEMU character device over a Unix socket (QEMU connects to it at
// start: `-chardev socket,path=…`) and stamps each line with its arrival time. Under TCG the
// guest's own clock drifts from the host's; the arrival time puts the firmware's and the
// kernel's lines on the same clock as the server's events.
type consoleCapture struct {
	mu    sync.Mutex
	lines []consoleLine
	done  chan struct{}
}

// captureConsole listens on sock; raw output is appended to logPath as it arrives (when not "").
func captureConsole(t *testing.T, sock, logPath string) *consoleCapture {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := &consoleCapture{done: make(chan struct{})}
	var f *os.File
	if logPath != "" {
		if f, err = os.Create(logPath); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		defer close(c.done)
		defer l.Close()
		if f != nil {
			defer f.Close()
		}
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		for {
			s, err := r.ReadString('\n')
			if len(s) > 0 {
				now := time.Now()
				if f != nil {
					_, _ = f.WriteString(s)
				}
				c.mu.Lock()
				c.lines = append(c.lines, consoleLine{now, strings.TrimRight(s, "\r\n")})
				c.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	})
	return c
}

// Lines returns the lines received so far.
func (c *consoleCapture) Lines() []consoleLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]consoleLine(nil), c.lines...)
}

// bootPhase is one span of a boot, from VM start.
type bootPhase struct {
	name       string
	start, end time.Duration
	note       string
}

// bootPhases splits a discovery VM's boot, from its start to its agent's registration, into the
// phases an operator can act on. The sources: SeaBIOS's debug console (firmware up, option ROM
// started, the kernel's real-mode setup asking for a video mode), the server's events (DHCP,
// script, kernel and initrd transfers with their start and duration, the agent's check-in) and
// the serial console (the kernel's first line, /init, and the agent's `PRYBAR-AGENT phase=`
// milestones). A source that is missing leaves its phases out.
func bootPhases(vm *discoVM, evs []*ent.Event) []bootPhase {
	rel := func(t time.Time) time.Duration { return t.Sub(vm.start) }
	type point struct {
		name string
		at   time.Duration
	}
	var marks []point
	mark := func(name string, at time.Duration) {
		if at >= 0 {
			marks = append(marks, point{name: name, at: at})
		}
	}
	var romAt, setupAt time.Duration = -1, -1
	if vm.firmware != nil {
		for _, l := range vm.firmware.Lines() {
			switch {
			case strings.HasPrefix(l.text, "Booting from ROM"):
				if romAt < 0 {
					romAt = rel(l.at)
				}
			case strings.HasPrefix(l.text, "set VGA mode 3") && romAt >= 0:
				// The kernel's real-mode setup code sets the video mode: iPXE has handed over.
				setupAt = rel(l.at)
			}
		}
	}
	var dhcpAt, scriptAt, kernelStart, kernelEnd, initrdStart, initrdEnd, regAt time.Duration = -1, -1, -1, -1, -1, -1, -1
	for _, e := range evs {
		at := rel(e.Time)
		if s, ok := e.Changes["start"].(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				at = rel(t)
			}
		}
		end := at
		if d, ok := e.Changes["duration_ms"].(float64); ok {
			end = at + time.Duration(d)*time.Millisecond
		}
		asset, _ := e.Changes["asset"].(string)
		what, _ := e.Changes["what"].(string)
		switch {
		case (strings.HasPrefix(e.Kind, "lease.") || strings.HasPrefix(e.Kind, "dhcp.")) && dhcpAt < 0:
			dhcpAt = at
		case e.Kind == "boot.http" && what == "script" && scriptAt < 0:
			scriptAt = at
		case e.Kind == "boot.http" && strings.HasSuffix(asset, "vmlinuz") && kernelStart < 0:
			kernelStart, kernelEnd = at, end
		case e.Kind == "boot.http" && strings.HasSuffix(asset, "initrd") && initrdStart < 0:
			initrdStart, initrdEnd = at, end
		case e.Kind == "agent.registered" && regAt < 0:
			regAt = at
		}
	}
	var kernelLine, initLine time.Duration = -1, -1
	agent := map[string]time.Duration{}
	var agentOrder []string
	notes := map[string]string{}
	for _, l := range vm.console.Lines() {
		switch {
		case strings.Contains(l.text, "Linux version") && kernelLine < 0:
			kernelLine = rel(l.at)
		case strings.Contains(l.text, "Run /init as init process") && initLine < 0:
			initLine = rel(l.at)
		case strings.HasPrefix(l.text, "PRYBAR-AGENT phase="):
			f := strings.Fields(strings.TrimPrefix(l.text, "PRYBAR-AGENT phase="))
			if len(f) == 0 {
				continue
			}
			if _, seen := agent[f[0]]; !seen {
				agent[f[0]] = rel(l.at)
				agentOrder = append(agentOrder, f[0])
				// The guest's own clock (uptime=…): the kernel's time to /init, and the modules'
				// load times.
				notes["agent: "+f[0]] = strings.Join(f[1:], " ")
			}
		}
	}
	mark("VM start", 0)
	mark("option ROM (iPXE) starts", romAt)
	mark("first DHCP answer", dhcpAt)
	mark("script fetched", scriptAt)
	mark("kernel download starts", kernelStart)
	mark("kernel downloaded", kernelEnd)
	mark("initrd download starts", initrdStart)
	mark("initrd downloaded", initrdEnd)
	mark("kernel setup (iPXE handed over)", setupAt)
	mark("kernel console up", kernelLine)
	mark("kernel runs /init", initLine)
	for _, a := range agentOrder {
		mark("agent: "+a, agent[a])
	}
	mark("server: agent registered", regAt)
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].at < marks[j].at })
	var out []bootPhase
	for i := 1; i < len(marks); i++ {
		prev, m := marks[i-1], marks[i]
		out = append(out, bootPhase{name: prev.name + " → " + m.name, start: prev.at, end: m.at, note: notes[m.name]})
	}
	return out
}

// bootEvents reads the server's boot events since the VM started (the lab serves this VM only;
// an unknown machine's DHCP and HTTP events carry no machine yet).
func (lab *discoLab) bootEvents(t *testing.T, vm *discoVM) []*ent.Event {
	t.Helper()
	st, err := store.Open(context.Background(), lab.db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Client.Event.Query().Where(event.TimeGTE(vm.start.Add(-time.Second))).Order(ent.Asc(event.FieldSeq)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// formatPhases renders the phases as a table, and as "discovery-vm-phase" lines for the bench file.
func formatPhases(phases []bootPhase) (table, bench string) {
	var tb, bb strings.Builder
	for _, p := range phases {
		d := p.end - p.start
		fmt.Fprintf(&tb, "  %6.2fs %+6.2fs  %s", p.start.Seconds(), d.Seconds(), p.name)
		if p.note != "" {
			fmt.Fprintf(&tb, " (%s)", p.note)
		}
		tb.WriteString("\n")
		fmt.Fprintf(&bb, "discovery-vm-phase %s %s %q\n", strconv.FormatFloat(p.start.Seconds(), 'f', 2, 64),
			strconv.FormatFloat(d.Seconds(), 'f', 2, 64), p.name)
	}
	return tb.String(), bb.String()
}

// consoleSocket is a short path for a QEMU chardev socket (sun_path holds 108 bytes; test
// directories can be long).
func consoleSocket(t *testing.T, name string) string {
	t.Helper()
	d, err := os.MkdirTemp("", "bs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, name)
}
