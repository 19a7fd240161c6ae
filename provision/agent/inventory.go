// Package agent is the library of prybar-agent, the program the discovery image runs: it reads
// the machine's inventory from /sys and /proc (under a configurable root, so tests read committed
// fixture trees), registers with the server using the per-boot token from the kernel command line,
// asks for work by long polling, runs each task with its timeout while streaming its output, and
// delivers each result idempotently (retried with jittered backoff until the server has it).
//
// The wire types (Inventory, Task, Result …) are shared with the server side, provision/agentapi.
package agent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Inventory is what the agent found on the machine.
type Inventory struct {
	DMI         DMI               `json:"dmi"`
	CPU         CPU               `json:"cpu"`
	MemoryBytes int64             `json:"memoryBytes"`
	NICs        []NIC             `json:"nics"`
	Disks       []Disk            `json:"disks"`
	DHCP        map[string]string `json:"dhcp,omitempty"` // the boot's DHCP facts (address, server …)
}

// DMI is the system identity from /sys/class/dmi/id.
type DMI struct {
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
	Serial  string `json:"serial,omitempty"`
	UUID    string `json:"uuid,omitempty"`
}

// CPU summarises the processors.
type CPU struct {
	Count int    `json:"count"`
	Model string `json:"model,omitempty"`
}

// NIC is one physical network interface (virtual ones — lo, bridges, tunnels — have no device
// and are left out).
type NIC struct {
	Name      string `json:"name"`
	MAC       string `json:"mac"`
	Driver    string `json:"driver,omitempty"`
	SpeedMbps int    `json:"speedMbps,omitempty"`
	Link      bool   `json:"link"`
	PCI       string `json:"pci,omitempty"`
}

// Disk is one whole block device backed by hardware (no loop, ram, dm or partition).
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"sizeBytes"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	Rotational bool   `json:"rotational"`
	WWN        string `json:"wwn,omitempty"`
}

// Kind is the inventory's disk kind: NVME, HDD or SSD.
func (d Disk) Kind() string {
	switch {
	case strings.HasPrefix(d.Name, "nvme"):
		return "NVME"
	case d.Rotational:
		return "HDD"
	}
	return "SSD"
}

// Collect reads the inventory of the machine whose /sys and /proc are under root ("/" on the
// machine itself). Missing optional files leave fields empty; a root without /proc/cpuinfo is an
// error, so a wrong root is not reported as an empty machine.
func Collect(root string) (Inventory, error) {
	var inv Inventory
	dmi := filepath.Join(root, "sys/class/dmi/id")
	inv.DMI = DMI{Vendor: readStr(dmi, "sys_vendor"), Product: readStr(dmi, "product_name"),
		Serial: readStr(dmi, "product_serial"), UUID: strings.ToLower(readStr(dmi, "product_uuid"))}
	cpu, err := readCPU(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return inv, err
	}
	inv.CPU = cpu
	inv.MemoryBytes = memory(root)
	if inv.NICs, err = nics(root); err != nil {
		return inv, err
	}
	if inv.Disks, err = disks(root); err != nil {
		return inv, err
	}
	return inv, nil
}

func readStr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(dir, name string) (int64, bool) {
	n, err := strconv.ParseInt(readStr(dir, name), 10, 64)
	return n, err == nil
}

func readCPU(path string) (CPU, error) {
	f, err := os.Open(path)
	if err != nil {
		return CPU{}, fmt.Errorf("cpu: %w", err)
	}
	defer f.Close()
	var c CPU
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			c.Count++
		case "model name":
			if c.Model == "" {
				c.Model = strings.TrimSpace(v)
			}
		}
	}
	if c.Count == 0 {
		return c, errors.New("cpu: no processor in " + path)
	}
	return c, sc.Err()
}

// memory is the installed memory: the online memory blocks of /sys/devices/system/memory (whole
// DIMM-sized figures, 1 GiB for a 1 GiB VM), falling back to MemTotal (which lacks what the kernel
// reserved) when the kernel has no memory hotplug directory.
func memory(root string) int64 {
	dir := filepath.Join(root, "sys/devices/system/memory")
	if hex := readStr(dir, "block_size_bytes"); hex != "" {
		if bs, err := strconv.ParseInt(hex, 16, 64); err == nil && bs > 0 {
			blocks, _ := filepath.Glob(filepath.Join(dir, "memory[0-9]*"))
			var n int64
			for _, b := range blocks {
				if readStr(b, "online") == "1" || readStr(b, "state") == "online" {
					n++
				}
			}
			if n > 0 {
				return n * bs
			}
		}
	}
	f, err := os.Open(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

var pciRE = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// pciOf returns the PCI address of a device directory: its own name, or that of a parent (a
// virtio device sits under its PCI function).
func pciOf(dev string) string {
	for d := dev; d != "/" && d != "." && d != ""; d = filepath.Dir(d) {
		if pciRE.MatchString(filepath.Base(d)) {
			return filepath.Base(d)
		}
	}
	return ""
}

func driverOf(dev string) string {
	l, err := os.Readlink(filepath.Join(dev, "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

func nics(root string) ([]NIC, error) {
	base := filepath.Join(root, "sys/class/net")
	ents, err := os.ReadDir(base)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []NIC
	for _, e := range ents {
		dir := filepath.Join(base, e.Name())
		dev, err := filepath.EvalSymlinks(filepath.Join(dir, "device"))
		if err != nil {
			continue // virtual interface
		}
		n := NIC{Name: e.Name(), MAC: strings.ToLower(readStr(dir, "address")), Driver: driverOf(dev), PCI: pciOf(dev)}
		if s, ok := readInt(dir, "speed"); ok && s > 0 {
			n.SpeedMbps = int(s)
		}
		n.Link = readStr(dir, "carrier") == "1"
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func disks(root string) ([]Disk, error) {
	base := filepath.Join(root, "sys/block")
	ents, err := os.ReadDir(base)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []Disk
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "dm-") ||
			strings.HasPrefix(name, "sr") || strings.HasPrefix(name, "zram") || strings.HasPrefix(name, "md") {
			continue
		}
		dir := filepath.Join(base, name)
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		sectors, _ := readInt(dir, "size")
		d := Disk{Name: name, SizeBytes: sectors * 512, Rotational: readStr(dir, "queue/rotational") == "1"}
		d.Model = first(readStr(dir, "device/model"), readStr(dir, "model"))
		d.Serial = first(readStr(dir, "serial"), readStr(dir, "device/serial"))
		d.WWN = first(readStr(dir, "wwid"), readStr(dir, "device/wwid"))
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func first(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// Cmdline is what the agent takes from the kernel command line.
type Cmdline struct {
	URL     string // prybar.url: the server's base URL
	Token   string // prybar.token: the per-boot agent token
	Machine int    // prybar.machine: the machine id when the machine was known (0: unknown)
	Trace   string // prybar.trace: the boot's trace id
	MAC     string // BOOTIF / prybar.mac: the NIC that booted
}

// ParseCmdline reads the prybar.* parameters from a kernel command line.
func ParseCmdline(s string) Cmdline {
	var c Cmdline
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "prybar.url":
			c.URL = strings.TrimSuffix(v, "/")
		case "prybar.token":
			c.Token = v
		case "prybar.machine":
			c.Machine, _ = strconv.Atoi(v)
		case "prybar.trace":
			c.Trace = v
		case "prybar.mac":
			c.MAC = strings.ToLower(v)
		}
	}
	return c
}
