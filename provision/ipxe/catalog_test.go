package ipxe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuiltinsValid(t *testing.T) {
	c := BuiltinCatalog()
	if got := strings.Join(c.Names(), ","); got != "debian-12-install,discovery,local" {
		t.Fatalf("built-ins = %s", got)
	}
	if b, _ := c.Get("debian-12-install"); b.Source != "builtin/builtin.yaml:25" || !b.Builtin {
		t.Errorf("debian-12-install source = %q builtin=%v", b.Source, b.Builtin)
	}
}

// Every mistake of a directory is reported at once, each with file:line, and nothing is loaded.
func TestReadDirErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", `bootenvs:
  - name: ok-env
    kernel: os/linux
  - name: Bad Name
    kernel: os/linux
  - name: escape
    kernel: ../../etc/passwd
  - name: broken
    kernel: os/linux
    cmdline: "x={{.Machine.Name"
  - name: nothing
    kernel2: x
`)
	write("b.yml", `bootenvs:
  - name: local
    script: "#!ipxe\nexit\n"
  - name: ok-env
    kernel: http://mirror.example/linux
    templates:
      ks: "{{if}}"
`)
	_, err := ReadDir(dir)
	if err == nil {
		t.Fatal("ReadDir accepted a bad directory")
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join(dir, "a.yaml") + `:4: bootenv "Bad Name": name: "Bad Name" is not a valid bootenv name`,
		filepath.Join(dir, "a.yaml") + `:6: bootenv "escape": "../../etc/passwd": want an asset path inside --boot-assets`,
		filepath.Join(dir, "a.yaml") + `:8: bootenv "broken": cmdline: template: cmdline:1: unclosed action`,
		filepath.Join(dir, "a.yaml") + `:12: bootenv "nothing": unknown field "kernel2"`,
		filepath.Join(dir, "a.yaml") + `:11: bootenv "nothing": needs a kernel or a script`,
		filepath.Join(dir, "b.yml") + `:7: bootenv "ok-env": templates: ks: template: ks:1: missing value for if`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q; got:\n%s", want, msg)
		}
	}

	// Once the files are individually valid, the set is checked: a built-in redefined, a duplicate.
	write("a.yaml", "bootenvs:\n  - name: ok-env\n    kernel: os/linux\n")
	write("b.yml", "bootenvs:\n  - name: local\n    script: \"#!ipxe\\nexit\\n\"\n  - name: ok-env\n    kernel: os/other\n")
	_, err = ReadDir(dir)
	for _, want := range []string{
		filepath.Join(dir, "b.yml") + `:2: bootenv "local": duplicate bootenv (a built-in bootenv has this name)`,
		filepath.Join(dir, "b.yml") + `:4: bootenv "ok-env": duplicate bootenv (first declared at ` + filepath.Join(dir, "a.yaml") + `:2)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("set errors lack %q; got: %v", want, err)
		}
	}

	write("b.yml", "bootenvs:\n  - name: centos\n    kernel: c/vmlinuz\n    initrd: c/initrd.img\n    templates:\n      ks: \"url {{.Asset \\\"c\\\"}}\"\n")
	c, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "centos,debian-12-install,discovery,local,ok-env" {
		t.Errorf("names = %s", got)
	}
}
