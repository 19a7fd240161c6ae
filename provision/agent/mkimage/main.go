// Command mkimage builds the discovery image (`make discovery-image`): Debian's cloud kernel
// (the linux-image-*-cloud-amd64 package fetched with apt-get download, unpacked with dpkg -x)
// and a u-root initramfs holding prybar-agent as its uinit, a few u-root core commands (a shell
// for task scripts, dhclient, file tools) and the kernel's virtio modules in load order.
//
// The output directory gets discovery/vmlinuz and discovery/initrd (the discovery bootenv's
// assets: serve it with --boot-assets DIR) and a BUILD file naming its inputs. The build is
// cached: the kernel package is downloaded once into the cache, and an image whose inputs (kernel
// package, module list, agent and u-root sources) are unchanged is not rebuilt. It is
// reproducible: the same inputs give byte-identical files (u-root writes mtime 0 and sorted
// entries; the agent is built with -trimpath and no build id).
package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Commands is the u-root core commands put into the image besides the agent.
var Commands = []string{"gosh", "dhclient", "ls", "cat", "echo", "mkdir", "mount", "umount", "rm", "cp", "sync",
	"shutdown", "ip", "dmesg", "sleep"}

// initArgs are the u-root builder's options that shape the image: prybar-agent is /init itself
// (process 1; it starts the agent and reaps orphans), gosh is /bin/sh for task scripts. They are
// part of the cache key.
var initArgs = []string{"-initcmd", "prybar-agent", "-defaultsh", "gosh"}

// rootModules are the modules the agent needs (their dependencies are added from each module's
// .modinfo): the cloud kernel builds the virtio drivers as modules.
var rootModules = []string{"virtio_pci", "virtio_net", "virtio_blk"}

func main() {
	out := flag.String("out", "", "output directory (gets discovery/vmlinuz and discovery/initrd)")
	cache := flag.String("cache", "", "cache directory (default $PRYBAR_CACHE, else the user cache's prybar/netboot)")
	verify := flag.Bool("verify", false, "also build the image again outside the cache and fail unless both are byte-identical")
	flag.Parse()
	err := build(*out, *cache)
	if err == nil && *verify {
		err = verifyBuild(*out, *cache)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func cacheDir(c string) (string, error) {
	if c == "" {
		c = os.Getenv("PRYBAR_CACHE")
	}
	if c == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		c = filepath.Join(base, "prybar", "netboot")
	}
	return c, os.MkdirAll(c, 0o755)
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b.String())
	}
	return nil
}

// kernelPackage names the package linux-image-cloud-amd64 depends on (e.g.
// linux-image-6.1.0-57-cloud-amd64).
func kernelPackage() (string, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", errors.New("linux-image-cloud-amd64 depends on no linux-image-* package")
}

// kernelTree downloads and unpacks pkg once into the cache; it returns the unpacked tree.
func kernelTree(cache, pkg string) (string, error) {
	tree := filepath.Join(cache, "kernel-"+pkg)
	if _, err := os.Stat(filepath.Join(tree, ".complete")); err == nil {
		return tree, nil
	}
	dl, err := os.MkdirTemp(cache, "dl-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dl)
	if err := run(dl, nil, "apt-get", "download", pkg); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %v", pkg, debs)
	}
	os.RemoveAll(tree)
	if err := run(dl, nil, "dpkg", "-x", debs[0], tree); err != nil {
		return "", err
	}
	return tree, os.WriteFile(filepath.Join(tree, ".complete"), []byte(filepath.Base(debs[0])+"\n"), 0o644)
}

// moduleOrder returns the .ko files to load for roots, each after its dependencies.
func moduleOrder(tree string, roots []string) ([]string, error) {
	byName := map[string]string{}
	err := filepath.WalkDir(filepath.Join(tree, "lib/modules"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			byName[strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var order []string
	done := map[string]bool{}
	var visit func(string, int) error
	visit = func(name string, depth int) error {
		if done[name] {
			return nil
		}
		if depth > 32 {
			return fmt.Errorf("module dependency loop at %s", name)
		}
		p, ok := byName[name]
		if !ok {
			return fmt.Errorf("module %s is not in the kernel package (built in?)", name)
		}
		deps, err := modDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		done[name] = true
		order = append(order, p)
		return nil
	}
	for _, r := range roots {
		if err := visit(r, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modDepends reads "depends=" from a module's .modinfo section.
func modDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("%s: no .modinfo", path)
	}
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// inputsKey hashes everything the image is made from, for the cache check.
func inputsKey(pkg string, mods []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "kernel %s\nmodules %s\ncommands %s\nlayout %s\n", pkg, strings.Join(mods, " "), strings.Join(Commands, " "), strings.Join(initArgs, " "))
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	var files []string
	for _, dir := range []string{"cmd/prybar-agent", "provision/agent"} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			// The builder itself is not an input (its command list is, above): editing it must not
			// force a rebuild of an identical image.
			if err == nil && d.IsDir() && p == "provision/agent/mkimage" {
				return filepath.SkipDir
			}
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			return "", err
		}
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

func build(out, cache string) error {
	if out == "" {
		return errors.New("-out DIR is required")
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root (make discovery-image)")
	}
	cache, err := cacheDir(cache)
	if err != nil {
		return err
	}
	pkg, err := kernelPackage()
	if err != nil {
		return err
	}
	tree, err := kernelTree(cache, pkg)
	if err != nil {
		return err
	}
	mods, err := moduleOrder(tree, rootModules)
	if err != nil {
		return err
	}
	var names []string
	for _, m := range mods {
		names = append(names, filepath.Base(m))
	}
	key, err := inputsKey(pkg, names)
	if err != nil {
		return err
	}
	dst := filepath.Join(out, "discovery")
	buildFile := filepath.Join(out, "BUILD")
	if b, err := os.ReadFile(buildFile); err == nil && strings.Contains(string(b), "key "+key+"\n") {
		if _, err := os.Stat(filepath.Join(dst, "initrd")); err == nil {
			fmt.Printf("discovery image up to date in %s (key %s)\n", dst, key)
			return nil
		}
	}
	// A cached image of the same inputs (another output directory, an earlier run) is copied.
	cached := filepath.Join(cache, "discovery-"+key)
	if _, err := os.Stat(filepath.Join(cached, "initrd")); err != nil {
		if err := buildInto(cached, tree, mods); err != nil {
			return err
		}
	}
	for _, f := range []string{"vmlinuz", "initrd"} {
		if err := copyFile(filepath.Join(cached, f), filepath.Join(dst, f), 0o644); err != nil {
			return err
		}
	}
	sums := ""
	for _, f := range []string{"vmlinuz", "initrd"} {
		data, _ := os.ReadFile(filepath.Join(dst, f))
		s := sha256.Sum256(data)
		sums += fmt.Sprintf("sha256 %x  discovery/%s (%d bytes)\n", s, f, len(data))
	}
	info := fmt.Sprintf("key %s\nkernel %s\nmodules %s\ncommands %s\n%s", key, pkg, strings.Join(names, " "), strings.Join(Commands, " "), sums)
	if err := os.WriteFile(buildFile, []byte(info), 0o644); err != nil {
		return err
	}
	fmt.Print(info)
	return nil
}

// verifyBuild builds the image once more into a scratch directory (same kernel tree, no image
// cache) and compares it with out's: the reproducibility check (`make discovery-image-verify`).
func verifyBuild(out, cache string) error {
	cache, err := cacheDir(cache)
	if err != nil {
		return err
	}
	pkg, err := kernelPackage()
	if err != nil {
		return err
	}
	tree, err := kernelTree(cache, pkg)
	if err != nil {
		return err
	}
	mods, err := moduleOrder(tree, rootModules)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(cache, "verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	again := filepath.Join(scratch, "image")
	if err := buildInto(again, tree, mods); err != nil {
		return err
	}
	for _, f := range []string{"vmlinuz", "initrd"} {
		a, err := os.ReadFile(filepath.Join(out, "discovery", f))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(again, f))
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("not reproducible: a second build's %s differs (sha256 %x, first %x)", f, sha256.Sum256(b), sha256.Sum256(a))
		}
		fmt.Printf("verified: a second build's %s is byte-identical (%d bytes)\n", f, len(b))
	}
	return nil
}

func buildInto(dir, tree string, mods []string) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	stage := filepath.Join(tmp, "stage")
	modDir := filepath.Join(stage, "modules")
	var order []string
	for _, m := range mods {
		if err := copyFile(m, filepath.Join(modDir, filepath.Base(m)), 0o644); err != nil {
			return err
		}
		order = append(order, filepath.Base(m))
	}
	if err := os.WriteFile(filepath.Join(modDir, "modules.order"), []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	vm, _ := filepath.Glob(filepath.Join(tree, "boot", "vmlinuz-*"))
	if len(vm) != 1 {
		return fmt.Errorf("no single vmlinuz in %s", tree)
	}
	if err := copyFile(vm[0], filepath.Join(tmp, "vmlinuz"), 0o644); err != nil {
		return err
	}
	args := []string{"tool", "u-root", "-o", filepath.Join(tmp, "initrd"), "-base", "/dev/null",
		"-files", modDir + ":lib/modules/prybar"}
	args = append(args, initArgs...)
	for _, c := range Commands {
		args = append(args, "github.com/u-root/u-root/cmds/core/"+c)
	}
	args = append(args, "./cmd/prybar-agent")
	wd, _ := os.Getwd()
	if err := run(wd, []string{"CGO_ENABLED=0", "GOFLAGS=-trimpath"}, "go", args...); err != nil {
		return err
	}
	os.RemoveAll(stage)
	os.RemoveAll(dir)
	return os.Rename(tmp, dir)
}
