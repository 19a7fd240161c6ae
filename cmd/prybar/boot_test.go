package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/ipxe"
)

// prybar bootenvs load: a bad directory is refused with file:line and stores nothing; a good one
// is stored next to the built-ins, and loading it again changes nothing.
func TestBootenvsLoad(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "prybar.db")
	envs := filepath.Join(dir, "bootenvs")
	must(t, os.Mkdir(envs, 0o755))
	bad := filepath.Join(envs, "alma.yaml")
	must(t, os.WriteFile(bad, []byte("bootenvs:\n  - name: alma-9-install\n    kernel: alma/vmlinuz\n    cmdline: \"inst.ks={{.Template \\\"ks\\\"\"\n"), 0o644))
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"bootenvs", "load", "--db", db, envs}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), bad+`:2: bootenv "alma-9-install": cmdline: template: cmdline:1: unclosed action`) {
		t.Fatalf("bad dir: %v", err)
	}
	if _, statErr := os.Stat(db); statErr == nil {
		t.Fatal("a refused load created the database")
	}
	must(t, os.WriteFile(bad, []byte("bootenvs:\n  - name: alma-9-install\n    kernel: alma/vmlinuz\n    initrd: alma/initrd.img\n    cmdline: \"inst.ks={{.Template \\\"ks\\\"}}\"\n    templates:\n      ks: \"network --hostname={{.Machine.Name}}\\n\"\n"), 0o644))
	if got := runCLI(t, "bootenvs", "load", "--db", db, envs); got != "4 bootenvs created, 0 updated, 0 unchanged\n" {
		t.Fatalf("load: %q", got)
	}
	if got := runCLI(t, "bootenvs", "load", "--db", db, envs); got != "0 bootenvs created, 0 updated, 4 unchanged\n" {
		t.Fatalf("reload: %q", got)
	}
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := (&ipxe.DB{Store: st}).Bootenv(context.Background(), "alma-9-install")
	if err != nil || b.Source != bad+":2" || b.Templates["ks"] == "" {
		t.Fatalf("stored alma-9-install = %+v, %v", b, err)
	}
}
