package tftp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ptftp "pack.ag/tftp"

	"github.com/prybar/prybar/provision/tftp"
)

// need skips outside CI and fails under CI=true when a real peer is missing.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (CI must have it: see .ci/run)", what)
	}
	t.Skipf("%s is missing here; skipping (CI installs it)", what)
}

func startServer(t *testing.T, dir string) (*tftp.Server, *transfers) {
	t.Helper()
	root, err := tftp.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := &transfers{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := tftp.Config{Listen: "127.0.0.1:0", Root: root, OnTransfer: tr.add}.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, tr
}

type transfers struct {
	mu   sync.Mutex
	list []tftp.Transfer
}

func (t *transfers) add(x tftp.Transfer) { t.mu.Lock(); t.list = append(t.list, x); t.mu.Unlock() }

// wait returns the transfers once n have been reported (bounded wait).
func (t *transfers) wait(tb testing.TB, n int) []tftp.Transfer {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		t.mu.Lock()
		if len(t.list) >= n {
			out := append([]tftp.Transfer(nil), t.list...)
			t.mu.Unlock()
			return out
		}
		t.mu.Unlock()
	}
	tb.Fatalf("%d transfers reported, want %d", len(t.list), n)
	return nil
}

// TestTFTPHPAClient fetches undionly.kpxe from Debian's ipxe package with the tftp-hpa client and
// compares it byte for byte; ../etc/passwd and an absolute path are refused.
func TestTFTPHPAClient(t *testing.T) {
	_, err := exec.LookPath("tftp")
	need(t, "tftp (Debian tftp-hpa)", err == nil)
	_, err = os.Stat(filepath.Join(tftp.DefaultRoot, "undionly.kpxe"))
	need(t, "undionly.kpxe (Debian ipxe)", err == nil)

	srv, tr := startServer(t, tftp.DefaultRoot)
	port := fmt.Sprint(srv.Addr().Port)
	out := filepath.Join(t.TempDir(), "got.kpxe")
	cmd := exec.Command("tftp", "-m", "binary", "127.0.0.1", port, "-c", "get", "undionly.kpxe", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tftp get: %v\n%s", err, b)
	}
	want, _ := os.ReadFile(filepath.Join(tftp.DefaultRoot, "undionly.kpxe"))
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatalf("undionly.kpxe: got %d bytes, want %d identical bytes", len(got), len(want))
	}
	list := tr.wait(t, 1)
	if list[0].File != "undionly.kpxe" || list[0].Bytes != int64(len(want)) || list[0].Err != nil || !list[0].Client.IsLoopback() {
		t.Errorf("transfer = %+v, want undionly.kpxe, %d bytes, no error, from loopback", list[0], len(want))
	}

	for i, name := range []string{"../etc/passwd", "/../etc/passwd", "a/../../etc/passwd"} {
		bad := filepath.Join(t.TempDir(), "passwd")
		b, _ := exec.Command("tftp", "-m", "binary", "127.0.0.1", port, "-c", "get", name, bad).CombinedOutput()
		// tftp-hpa exits 0 even on an error packet: the message and the absent file tell.
		if data, err := os.ReadFile(bad); err == nil && len(data) > 0 {
			t.Errorf("get %s: received %d bytes, want refusal", name, len(data))
		}
		if !strings.Contains(string(b), "Error code") {
			t.Errorf("get %s: client output %q, want an error from the server", name, b)
		}
		l := tr.wait(t, 2+i)
		if l[1+i].Err == nil || l[1+i].Bytes != 0 {
			t.Errorf("transfer of %s = %+v, want refused", name, l[1+i])
		}
	}
}

// TestSymlinkEscape: a link inside the root that points outside it is refused, one that stays
// inside is served.
func TestSymlinkEscape(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "inside.bin"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink(outside, filepath.Join(dir, "escape")))
	must(t, os.Symlink("inside.bin", filepath.Join(dir, "alias.bin")))
	srv, _ := startServer(t, dir)
	url := fmt.Sprintf("tftp://127.0.0.1:%d/", srv.Addr().Port)
	c, err := ptftp.NewClient(ptftp.ClientTimeout(2))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Get(url + "escape"); err == nil {
		b, _ := io.ReadAll(r)
		t.Fatalf("escape: got %q, want refusal", b)
	}
	r, err := c.Get(url + "alias.bin")
	if err != nil {
		t.Fatalf("alias.bin: %v", err)
	}
	if b, _ := io.ReadAll(r); string(b) != "inside" {
		t.Fatalf("alias.bin = %q, want inside", b)
	}
}

// TestOptions: blksize and tsize are negotiated (pack.ag/tftp's client asks for both), and a file
// that is an exact multiple of the block size ends with an empty block.
func TestOptions(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB: 11 blocks of 1468 + rest
	must(t, os.WriteFile(filepath.Join(dir, "f.bin"), data, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "even.bin"), data[:8192], 0o644))
	srv, tr := startServer(t, dir)
	url := fmt.Sprintf("tftp://127.0.0.1:%d/", srv.Addr().Port)
	for i, tc := range []struct {
		file    string
		blksize int
		want    []byte
	}{{"f.bin", 1468, data}, {"even.bin", 1024, data[:8192]}, {"f.bin", 512, data}} {
		c, err := ptftp.NewClient(ptftp.ClientBlocksize(tc.blksize), ptftp.ClientTransferSize(true), ptftp.ClientTimeout(2))
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Get(url + tc.file)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if n, err := r.Size(); err != nil || n != int64(len(tc.want)) {
			t.Errorf("%s tsize = %d, %v; want %d", tc.file, n, err, len(tc.want))
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s blksize %d: got %d bytes (%v), want %d", tc.file, tc.blksize, len(got), err, len(tc.want))
		}
		tr.wait(t, i+1)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"undionly.kpxe": "undionly.kpxe", "/undionly.kpxe": "undionly.kpxe",
		`efi\ipxe.efi`: "efi/ipxe.efi", "a/b.c": "a/b.c",
		"../etc/passwd": "", "/../x": "", "a/../../x": "", "a/./b": "", "//etc/passwd": "",
		"": "", ".": "", "/": "", "a//b": "", "a/": "",
	} {
		got, err := tftp.CleanName(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Closing twice, and closing while the start context ends, is safe (pack.ag/tftp's Close alone
// panics the second time: a test's cleanup crashed on it now and then).
func TestCloseTwiceAndOnCancel(t *testing.T) {
	root, err := tftp.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := tftp.Config{Listen: "127.0.0.1:0", Root: root}.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // the context goroutines' Close calls
}
