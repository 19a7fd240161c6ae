package ipxe_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/ipxe"
)

type bootEnv struct {
	st      *store.Store
	srv     *httptest.Server
	machine int
	asset   []byte
	assets  string
}

// newBootEnv: a SQLite store with the built-in bootenvs, one machine (NIC 52:54:00:12:34:56,
// address 127.0.0.1 so loopback fetches are attributed to it), an asset tree, and the boot
// handler on a real loopback listener.
func newBootEnv(t *testing.T) *bootEnv {
	t.Helper()
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	ctx := events.WithActor(context.Background(), "test")
	if _, err := ipxe.Load(ctx, st, ipxe.BuiltinCatalog()); err != nil {
		t.Fatal(err)
	}
	var id int
	if err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("web01.a01.ams1.example").Save(ctx)
		if err != nil {
			return err
		}
		id = m.ID
		nw, err := tx.Network.Create().SetName("lo").SetCidr("127.0.0.0/8").Save(ctx)
		if err != nil {
			return err
		}
		if err := tx.NIC.Create().SetMAC("52:54:00:12:34:56").SetMachineID(id).Exec(ctx); err != nil {
			return err
		}
		return tx.IPAllocation.Create().SetAddress("127.0.0.1").SetNetworkID(nw.ID).SetMachineID(id).Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	asset := make([]byte, 300_000)
	rand.Read(asset)
	if err := os.MkdirAll(filepath.Join(dir, "discovery"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "discovery", "vmlinuz"), asset, 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("secret"), 0o644)
	if err := os.Symlink(secret, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	root, err := ipxe.OpenAssets(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	h := &ipxe.Handler{Backend: &ipxe.DB{Store: st}, Tokens: ipxe.Tokens{Key: []byte("test key")}, Assets: root}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &bootEnv{st: st, srv: srv, machine: id, asset: asset, assets: dir}
}

func (b *bootEnv) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(b.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (b *bootEnv) setBootenv(t *testing.T, name string) {
	t.Helper()
	err := b.st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		_, err := ipxe.SetBootenv(ctx, tx, b.machine, name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

var tokenRE = regexp.MustCompile(`token=([A-Za-z0-9_.%-]+)`)

// The whole boot conversation over HTTP: script by MAC, template with the boot's token, the
// completion callback flipping the machine to local, and the events it leaves.
func TestBootHTTP(t *testing.T) {
	b := newBootEnv(t)
	host := strings.TrimPrefix(b.srv.URL, "http://")

	code, script := b.get(t, "/boot/ipxe?mac=52-54-00-12-34-56")
	if code != 200 || !strings.HasPrefix(script, "#!ipxe\necho Prybar: web01.a01.ams1.example boots discovery\nkernel http://"+host+"/boot/assets/discovery/vmlinuz initrd=initrd ") {
		t.Fatalf("discovery script: %d\n%s", code, script)
	}
	// Unknown MAC: the discovery bootenv, without a machine, with an agent token scoped to the MAC
	// and the boot's trace (given here by the DHCP answer's URL).
	if code, s := b.get(t, "/boot/ipxe?mac=52:54:00:ff:ff:ff&trace=t123"); code != 200 || !strings.Contains(s, "prybar.machine=0 prybar.token=") ||
		!strings.Contains(s, " prybar.trace=t123 prybar.mac=52:54:00:ff:ff:ff\n") {
		t.Errorf("unknown MAC: %d\n%s", code, s)
	} else {
		tok := strings.Fields(s[strings.Index(s, "prybar.token="):])[0][len("prybar.token="):]
		id, scope, err := (ipxe.Tokens{Key: []byte("test key")}).Verify(tok, time.Now())
		if err != nil || id != 0 || scope != "agent/t123/52:54:00:ff:ff:ff" {
			t.Errorf("unknown MAC's agent token: %d %q %v", id, scope, err)
		}
	}
	if code, s := b.get(t, "/boot/ipxe?mac=nonsense"); code != 200 || s != ipxe.ErrorScript(`bad MAC address "nonsense"`) {
		t.Errorf("bad MAC: %d %q", code, s)
	}

	b.setBootenv(t, "debian-12-install")
	code, script = b.get(t, fmt.Sprintf("/boot/ipxe?machine=%d", b.machine))
	m := tokenRE.FindStringSubmatch(script)
	if code != 200 || m == nil {
		t.Fatalf("install script without a token: %d\n%s", code, script)
	}
	tok, _ := url.QueryUnescape(m[1])
	// The preseed needs the debian_mirror attribute: without it the template fails, with the reason.
	code, preseed := b.get(t, fmt.Sprintf("/boot/template/preseed?machine=%d&token=%s", b.machine, url.QueryEscape(tok)))
	if code != 500 || !strings.Contains(preseed, `map has no entry for key "debian_mirror"`) {
		t.Fatalf("preseed without debian_mirror: %d %s", code, preseed)
	}
	if err := b.st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		r, err := tx.Role.Create().SetName("os-install").SetExecutor("noop").Save(ctx)
		if err != nil {
			return err
		}
		d, err := tx.Deployment.Create().SetName("install").Save(ctx)
		if err != nil {
			return err
		}
		return tx.NodeRole.Create().SetMachineID(b.machine).SetRoleID(r.ID).SetDeploymentID(d.ID).
			SetCommittedData(map[string]any{"debian_mirror": "mirror.example"}).Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	code, preseed = b.get(t, fmt.Sprintf("/boot/template/preseed?machine=%d&token=%s", b.machine, url.QueryEscape(tok)))
	if code != 200 || !strings.Contains(preseed, "d-i netcfg/get_hostname string web01\n") ||
		!strings.Contains(preseed, "d-i mirror/http/hostname string mirror.example\n") ||
		!strings.Contains(preseed, "/boot/done?token="+url.QueryEscape(tok)) {
		t.Fatalf("preseed: %d\n%s", code, preseed)
	}
	if code, _ := b.get(t, fmt.Sprintf("/boot/template/preseed?machine=%d&token=forged", b.machine)); code != 403 {
		t.Errorf("forged token: %d, want 403", code)
	}
	if code, _ := b.get(t, fmt.Sprintf("/boot/template/preseed?machine=%d&token=%s", b.machine+1, url.QueryEscape(tok))); code != 403 {
		t.Errorf("token of another machine: %d, want 403", code)
	}
	if code, _ := b.get(t, "/boot/done?token="+url.QueryEscape(tok)); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /boot/done: %d, want 405", code)
	}
	post := func(tok string) int {
		resp, err := http.Post(b.srv.URL+"/boot/done?token="+url.QueryEscape(tok), "text/plain", strings.NewReader("done"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("forged"); c != 403 {
		t.Errorf("done with a forged token: %d, want 403", c)
	}
	if c := post(tok); c != http.StatusNoContent {
		t.Fatalf("done: %d, want 204", c)
	}
	mach, _ := b.st.Client.Machine.Get(context.Background(), b.machine)
	if mach.Bootenv != "local" {
		t.Fatalf("bootenv after done = %s, want local", mach.Bootenv)
	}
	// Replayed: the machine is no longer installing, nothing changes.
	if c := post(tok); c != http.StatusConflict {
		t.Errorf("second done: %d, want 409", c)
	}
	if _, s := b.get(t, "/boot/ipxe?mac=52:54:00:12:34:56"); !strings.Contains(s, "sanboot --no-describe --drive 0x80") {
		t.Errorf("after done the script is\n%s\nwant the local one", s)
	}

	want := []string{"boot.http script 200", "boot.http script 200", "boot.http template 500", "boot.http template 200",
		"boot.done <nil> <nil>", "boot.http script 200"}
	// Events are written after each response: wait (bounded) for the last one.
	var evs []*ent.Event
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		evs, err = b.st.Client.Event.Query().Where(event.KindHasPrefix("boot."), event.MachineID(b.machine)).Order(ent.Asc(event.FieldSeq)).All(context.Background())
		if err != nil || len(evs) >= len(want) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s %v %v", e.Kind, e.Changes["what"], e.Changes["status"]))
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("machine's boot events =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A bootenv whose template fails at render time answers an error script (200, #!ipxe … shell),
// never an empty page.
func TestRenderFailureAnswersErrorScript(t *testing.T) {
	b := newBootEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("bootenvs:\n  - name: broken\n    kernel: k\n    cmdline: \"x={{.Attributes.nope.deeper}}\"\n"), 0o644)
	if _, err := ipxe.LoadDir(context.Background(), b.st, dir); err != nil {
		t.Fatal(err)
	}
	b.setBootenv(t, "broken")
	code, s := b.get(t, "/boot/ipxe?mac=52:54:00:12:34:56")
	if code != 200 || !strings.HasPrefix(s, "#!ipxe\necho Prybar cannot boot this machine: bootenv broken: template: cmdline:1:") || !strings.HasSuffix(s, "\nshell\n") {
		t.Errorf("broken bootenv: %d\n%s", code, s)
	}
}

// Assets with real curl: a Range request gets exactly those bytes (206), the ETag revalidates to
// 304, a symbolic link out of the asset root and a .. path are 404.
func TestAssetsWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl missing")
		}
		t.Skip("curl missing")
	}
	b := newBootEnv(t)
	u := b.srv.URL + "/boot/assets/discovery/vmlinuz"
	out := filepath.Join(t.TempDir(), "part")
	hdr := filepath.Join(t.TempDir(), "hdr")
	curl := func(args ...string) string {
		t.Helper()
		o, err := exec.Command("curl", append([]string{"-sS"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, o)
		}
		return string(o)
	}
	if code := curl("-r", "1000-5999", "-o", out, "-D", hdr, "-w", "%{http_code}", u); code != "206" {
		t.Fatalf("range: status %s", code)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, b.asset[1000:6000]) {
		t.Fatalf("range: got %d bytes, not bytes 1000-5999 of the asset", len(got))
	}
	h, _ := os.ReadFile(hdr)
	etag := regexp.MustCompile(`(?im)^etag: (".*")\r?$`).FindStringSubmatch(string(h))
	if etag == nil || !strings.Contains(string(h), "Content-Range: bytes 1000-5999/300000") {
		t.Fatalf("range headers:\n%s", h)
	}
	if code := curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: "+etag[1], u); code != "304" {
		t.Errorf("If-None-Match: status %s, want 304", code)
	}
	full := filepath.Join(t.TempDir(), "full")
	if code := curl("-o", full, "-w", "%{http_code}", u); code != "200" {
		t.Errorf("full: %s", code)
	}
	if got, _ := os.ReadFile(full); !bytes.Equal(got, b.asset) {
		t.Errorf("full download differs")
	}
	for _, p := range []string{"/boot/assets/escape", "/boot/assets/../../etc/passwd", "/boot/assets/%2e%2e/%2e%2e/etc/passwd"} {
		if code := curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", b.srv.URL+p); code != "404" {
			t.Errorf("%s: status %s, want 404", p, code)
		}
	}
	// Every fetch is a boot.http event of the machine at 127.0.0.1.
	// The event is written after the response, so the last one may trail curl a little.
	var n int
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n, err = b.st.Client.Event.Query().Where(event.Kind("boot.http"), event.MachineID(b.machine)).Count(context.Background())
		if err != nil || n >= 6 {
			break
		}
	}
	if err != nil || n != 6 {
		t.Errorf("asset events of the machine = %d, %v; want 6", n, err)
	}
}

// clientFrom returns an HTTP client whose connections come from local address ip (any 127/8
// address is local on Linux), to play a machine at another address.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// A machine with no allocation for its address (a pool lease, or another DHCP server's address in
// proxy mode): the asset fetches that follow its script from the same address are its events.
func TestAssetsAttributedAfterScript(t *testing.T) {
	b := newBootEnv(t)
	var other int
	if err := b.st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("web02.a01.ams1.example").Save(ctx)
		if err != nil {
			return err
		}
		other = m.ID
		return tx.NIC.Create().SetMAC("52:54:00:00:00:02").SetMachineID(m.ID).Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	fetch := func(c *http.Client, path string) {
		resp, err := c.Get(b.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fetch(clientFrom("127.0.0.3"), "/boot/assets/discovery/vmlinuz") // nobody's: no script from .3
	fetch(clientFrom("127.0.0.2"), "/boot/ipxe?mac=52:54:00:00:00:02")
	fetch(clientFrom("127.0.0.2"), "/boot/assets/discovery/vmlinuz")
	var evs []*ent.Event
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		evs, _ = b.st.Client.Event.Query().Where(event.Kind("boot.http")).Order(ent.Asc(event.FieldSeq)).All(context.Background())
		if len(evs) >= 3 {
			break
		}
	}
	// Each event is written when its request ends; the order of the steps is that of their starts.
	sort.SliceStable(evs, func(i, j int) bool { return startOf(evs[i]).Before(startOf(evs[j])) })
	var got []string
	for _, e := range evs {
		id := 0
		if e.MachineID != nil {
			id = *e.MachineID
		}
		got = append(got, fmt.Sprintf("%v %v %d", e.Changes["what"], e.Changes["client"], id))
	}
	want := []string{"asset 127.0.0.3 0", fmt.Sprintf("script 127.0.0.2 %d", other), fmt.Sprintf("asset 127.0.0.2 %d", other)}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func startOf(e *ent.Event) time.Time {
	s, _ := e.Changes["start"].(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}
