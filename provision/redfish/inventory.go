package redfish

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/prybar/prybar/provision/bmc"
)

// Inventory is the hardware of one system as its BMC reports it. It is a plain value so callers can
// map it onto their own storage without this package knowing about it.
type Inventory struct {
	// SystemID is the Redfish Id of the system read: a caller records it on the BMC when the
	// record has none, so the machine stays bound to this system if the BMC later lists more.
	SystemID     string
	Manufacturer string
	Model        string
	SerialNumber string
	UUID         string
	SKU          string
	BIOSVersion  string
	PowerState   bmc.PowerState // empty when the BMC reported no usable state

	ProcessorCount int // installed CPUs (absent sockets and accelerators not counted)
	Processors     []Processor
	MemoryBytes    int64
	NICs           []NIC
	Disks          []Disk
}

// Processor is one installed CPU.
type Processor struct {
	ID      string
	Socket  string
	Model   string
	Arch    string // instruction set, e.g. "x86-64", else the architecture
	Cores   int
	Threads int
}

// NIC is one physical host network interface.
type NIC struct {
	ID         string
	Name       string
	MACAddress string // lower-case, colon-separated
	SpeedMbps  int
	// LinkStatus is "LinkUp", "LinkDown", or "" when the BMC does not say (many do not, e.g. for
	// ports without a transceiver): unknown, which is not the same as down.
	LinkStatus string
	Path       string // the Redfish resource the MAC was read from
}

// LinkUp is the link as a tri-state: nil when the BMC did not report it.
func (n NIC) LinkUp() *bool {
	var up bool
	switch n.LinkStatus {
	case "LinkUp":
		up = true
	case "LinkDown", "NoLink":
		up = false
	default:
		return nil
	}
	return &up
}

// linkStatus maps the link vocabularies of EthernetInterface (LinkUp, LinkDown, NoLink),
// Port (LinkUp, LinkDown, Starting, Training) and the older NetworkPort (Up, Down) onto
// EthernetInterface's; anything else is unknown ("").
func linkStatus(s string) string {
	switch strings.ToLower(s) {
	case "linkup", "up":
		return "LinkUp"
	case "linkdown", "down", "nolink":
		return "LinkDown"
	}
	return ""
}

// Disk is one present drive.
type Disk struct {
	// ID is the Redfish Id, else the drive's resource path below /redfish/v1 (for drives
	// without Id, and SimpleStorage devices, which have none): never empty, so no drive is lost.
	ID            string
	Name          string
	Model         string
	SerialNumber  string
	CapacityBytes int64
	Kind          string // "hdd", "ssd", "nvme" or "" when the BMC does not say
	Path          string // the Redfish resource the drive was read from
}

// relPath is a resource path below the service root, used to name what the BMC left unnamed.
func relPath(p string) string {
	return strings.Trim(strings.TrimPrefix(strings.TrimSuffix(p, "/"), "/redfish/v1"), "/")
}

type status struct {
	State string
}

// optional treats a missing sub-resource as empty: BMCs omit whole collections they do not support.
func optional(err error) error {
	if statusOf(err) == http.StatusNotFound {
		return nil
	}
	return err
}

// Inventory reads the system, its processors, memory, network interfaces and drives.
func (c *Client) Inventory(ctx context.Context) (*Inventory, error) {
	s, _, err := c.getSystem(ctx)
	if err != nil {
		return nil, err
	}
	inv := &Inventory{
		SystemID: lastSegment(s.ID), Manufacturer: s.Manufacturer, Model: s.Model, SerialNumber: s.SerialNumber, UUID: s.UUID,
		SKU: s.SKU, BIOSVersion: s.BiosVersion,
	}
	if ps, err := mapPowerState(s.PowerState); err == nil {
		inv.PowerState = ps
	}
	if err := c.processors(ctx, s, inv); err != nil {
		return nil, fmt.Errorf("redfish: inventory processors: %w", err)
	}
	if err := c.memory(ctx, s, inv); err != nil {
		return nil, fmt.Errorf("redfish: inventory memory: %w", err)
	}
	if err := c.nics(ctx, s, inv); err != nil {
		return nil, fmt.Errorf("redfish: inventory network interfaces: %w", err)
	}
	if err := c.disks(ctx, s, inv); err != nil {
		return nil, fmt.Errorf("redfish: inventory drives: %w", err)
	}
	return inv, nil
}

func (c *Client) processors(ctx context.Context, s *computerSystem, inv *Inventory) error {
	if s.Processors.ID == "" {
		inv.ProcessorCount = s.ProcessorSummary.Count
		return nil
	}
	ms, err := c.members(ctx, s.Processors.ID)
	if err != nil {
		return optional(err)
	}
	for _, m := range ms {
		var p struct {
			RID                                   string `json:"Id"`
			Socket, Model, ProcessorType          string
			InstructionSet, ProcessorArchitecture string
			TotalCores, TotalThreads              int
			Status                                status
		}
		if _, err := c.get(ctx, m, &p); err != nil {
			return err
		}
		// ProcessorSummary.Count may include empty sockets (the DMTF mock-ups do), so count members.
		if p.Status.State == "Absent" || (p.ProcessorType != "" && p.ProcessorType != "CPU") {
			continue
		}
		arch := p.InstructionSet
		if arch == "" {
			arch = p.ProcessorArchitecture
		}
		inv.Processors = append(inv.Processors, Processor{ID: p.RID, Socket: p.Socket, Model: p.Model, Arch: arch, Cores: p.TotalCores, Threads: p.TotalThreads})
	}
	inv.ProcessorCount = len(inv.Processors)
	return nil
}

// memory prefers the summary, which BMCs compute from SPD; summing DIMMs is the fallback for BMCs
// that leave the summary out.
func (c *Client) memory(ctx context.Context, s *computerSystem, inv *Inventory) error {
	if g := s.MemorySummary.TotalSystemMemoryGiB; g != nil && *g > 0 {
		inv.MemoryBytes = int64(math.Round(*g * (1 << 30)))
		return nil
	}
	if s.Memory.ID == "" {
		return nil
	}
	ms, err := c.members(ctx, s.Memory.ID)
	if err != nil {
		return optional(err)
	}
	for _, m := range ms {
		var d struct {
			CapacityMiB int64
			Status      status
		}
		if _, err := c.get(ctx, m, &d); err != nil {
			return err
		}
		if d.Status.State != "Absent" {
			inv.MemoryBytes += d.CapacityMiB << 20
		}
	}
	return nil
}

// nics lists physical host interfaces only: VLAN sub-interfaces repeat their parent's MAC and the
// host-to-BMC interface is not a NIC anything boots from.
func (c *Client) nics(ctx context.Context, s *computerSystem, inv *Inventory) error {
	if s.EthernetInterfaces.ID == "" {
		return nil
	}
	ms, err := c.members(ctx, s.EthernetInterfaces.ID)
	if err != nil {
		return optional(err)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		var n struct {
			RID                                   string `json:"Id"`
			Name, MACAddress, PermanentMACAddress string
			LinkStatus, EthernetInterfaceType     string
			SpeedMbps                             int
			Status                                status
			Links                                 struct{ HostInterface odataID }
		}
		if _, err := c.get(ctx, m, &n); err != nil {
			return err
		}
		if n.EthernetInterfaceType == "Virtual" || n.Links.HostInterface.ID != "" || n.Status.State == "Absent" {
			continue
		}
		mac := n.MACAddress
		if mac == "" {
			mac = n.PermanentMACAddress
		}
		mac = NormalizeMAC(mac)
		if mac == "" || seen[mac] {
			continue
		}
		seen[mac] = true
		inv.NICs = append(inv.NICs, NIC{ID: n.RID, Name: n.Name, MACAddress: mac, SpeedMbps: n.SpeedMbps, LinkStatus: linkStatus(n.LinkStatus), Path: m})
	}
	return c.deviceFunctionNICs(ctx, s, inv, seen)
}

// deviceFunctionNICs reads the MACs that BMCs of SmartNICs, blades and newer servers publish only
// in the network-adapter model: NetworkDeviceFunctions (Ethernet.MACAddress) reached from the
// system's NetworkInterfaces or from its chassis' NetworkAdapters, with link and speed from the
// physical port the function is assigned to. MACs already read from EthernetInterfaces are
// skipped.
func (c *Client) deviceFunctionNICs(ctx context.Context, s *computerSystem, inv *Inventory, seen map[string]bool) error {
	var funcCols []string
	adapters := map[string]bool{}
	addAdapter := func(p string) error {
		if p == "" || adapters[p] {
			return nil
		}
		adapters[p] = true
		var a struct{ NetworkDeviceFunctions odataID }
		if _, err := c.get(ctx, p, &a); err != nil {
			return optional(err)
		}
		if a.NetworkDeviceFunctions.ID != "" {
			funcCols = append(funcCols, a.NetworkDeviceFunctions.ID)
		}
		return nil
	}
	if s.NetworkInterfaces.ID != "" {
		ms, err := c.members(ctx, s.NetworkInterfaces.ID)
		if err != nil && optional(err) != nil {
			return err
		}
		for _, m := range ms {
			var ni struct {
				NetworkDeviceFunctions odataID
				Links                  struct{ NetworkAdapter odataID }
			}
			if _, err := c.get(ctx, m, &ni); err != nil {
				if optional(err) != nil {
					return err
				}
				continue
			}
			if ni.NetworkDeviceFunctions.ID != "" {
				funcCols = append(funcCols, ni.NetworkDeviceFunctions.ID)
			}
			if err := addAdapter(ni.Links.NetworkAdapter.ID); err != nil {
				return err
			}
		}
	}
	for _, ch := range s.Links.Chassis {
		var chassis struct{ NetworkAdapters odataID }
		if _, err := c.get(ctx, ch.ID, &chassis); err != nil {
			if optional(err) != nil {
				return err
			}
			continue
		}
		if chassis.NetworkAdapters.ID == "" {
			continue
		}
		ms, err := c.members(ctx, chassis.NetworkAdapters.ID)
		if err != nil && optional(err) != nil {
			return err
		}
		for _, m := range ms {
			if err := addAdapter(m); err != nil {
				return err
			}
		}
	}
	doneCols, doneFuncs := map[string]bool{}, map[string]bool{}
	for _, col := range funcCols {
		if doneCols[col] {
			continue
		}
		doneCols[col] = true
		ms, err := c.members(ctx, col)
		if err != nil {
			if optional(err) != nil {
				return err
			}
			continue
		}
		for _, m := range ms {
			if doneFuncs[m] {
				continue
			}
			doneFuncs[m] = true
			var f struct {
				RID            string `json:"Id"`
				Name           string
				NetDevFuncType string
				Status         status
				Ethernet       struct{ MACAddress, PermanentMACAddress string }
				Links          struct {
					PhysicalPortAssignment        odataID
					PhysicalNetworkPortAssignment odataID
				}
				AssignablePhysicalPorts []odataID
			}
			if _, err := c.get(ctx, m, &f); err != nil {
				return err
			}
			if f.Status.State == "Absent" || (f.NetDevFuncType != "" && f.NetDevFuncType != "Ethernet") {
				continue
			}
			mac := f.Ethernet.MACAddress
			if mac == "" {
				mac = f.Ethernet.PermanentMACAddress
			}
			mac = NormalizeMAC(mac)
			if mac == "" || seen[mac] {
				continue
			}
			seen[mac] = true
			n := NIC{ID: f.RID, Name: f.Name, MACAddress: mac, Path: m}
			if n.ID == "" {
				n.ID = relPath(m)
			}
			port := f.Links.PhysicalPortAssignment.ID
			if port == "" {
				port = f.Links.PhysicalNetworkPortAssignment.ID
			}
			if port == "" && len(f.AssignablePhysicalPorts) == 1 {
				port = f.AssignablePhysicalPorts[0].ID
			}
			if port != "" {
				var p struct {
					LinkStatus           string
					CurrentSpeedGbps     float64
					CurrentLinkSpeedMbps int
				}
				if _, err := c.get(ctx, port, &p); err != nil && optional(err) != nil {
					return err
				}
				n.LinkStatus = linkStatus(p.LinkStatus)
				n.SpeedMbps = p.CurrentLinkSpeedMbps
				if n.SpeedMbps == 0 && p.CurrentSpeedGbps > 0 {
					n.SpeedMbps = int(math.Round(p.CurrentSpeedGbps * 1000))
				}
			}
			inv.NICs = append(inv.NICs, n)
		}
	}
	return nil
}

// NormalizeMAC returns mac in lower-case colon form ("aa:bb:cc:dd:ee:ff") whatever separators the
// BMC used, or mac lower-cased when it is not a 48-bit address.
func NormalizeMAC(mac string) string {
	var hex []byte
	for i := 0; i < len(mac); i++ {
		switch ch := mac[i]; {
		case ch >= '0' && ch <= '9', ch >= 'a' && ch <= 'f':
			hex = append(hex, ch)
		case ch >= 'A' && ch <= 'F':
			hex = append(hex, ch+('a'-'A'))
		case ch == ':' || ch == '-' || ch == '.':
		default:
			return strings.ToLower(strings.TrimSpace(mac))
		}
	}
	if len(hex) != 12 {
		return strings.ToLower(strings.TrimSpace(mac))
	}
	var b strings.Builder
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.Write(hex[i : i+2])
	}
	return b.String()
}

type drive struct {
	ID            string `json:"@odata.id"`
	RID           string `json:"Id"`
	Name          string
	Model         string
	SerialNumber  string
	CapacityBytes *int64
	MediaType     string
	Protocol      string
	Status        status
}

func driveKind(mediaType, protocol string) string {
	switch {
	case strings.EqualFold(protocol, "NVMe"):
		return "nvme"
	case strings.EqualFold(mediaType, "SSD"):
		return "ssd"
	case strings.EqualFold(mediaType, "HDD"):
		return "hdd"
	}
	return ""
}

// disks reads the Storage model (drives linked from Storage resources, which may live under the
// chassis) plus the chassis' own Drives collection, deduplicated. SimpleStorage is the legacy view of
// the same disks on BMCs that offer both, so it is used only when the Storage model yields nothing;
// otherwise every disk would be counted twice.
func (c *Client) disks(ctx context.Context, s *computerSystem, inv *Inventory) error {
	var links []string
	if s.Storage.ID != "" {
		ms, err := c.members(ctx, s.Storage.ID)
		if err != nil && optional(err) != nil {
			return err
		}
		for _, m := range ms {
			var st struct{ Drives []odataID }
			if _, err := c.get(ctx, m, &st); err != nil {
				return err
			}
			for _, d := range st.Drives {
				links = append(links, d.ID)
			}
		}
	}
	for _, ch := range s.Links.Chassis {
		var chassis struct{ Drives odataID }
		if _, err := c.get(ctx, ch.ID, &chassis); err != nil {
			if optional(err) != nil {
				return err
			}
			continue
		}
		if chassis.Drives.ID == "" {
			continue
		}
		ms, err := c.members(ctx, chassis.Drives.ID)
		if err != nil && optional(err) != nil {
			return err
		}
		links = append(links, ms...)
	}
	seen := map[string]bool{}
	for _, l := range links {
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		var d drive
		if _, err := c.get(ctx, l, &d); err != nil {
			return err
		}
		// The same drive can be reachable under two URIs; the serial number identifies it.
		if d.SerialNumber != "" {
			if seen["serial:"+d.SerialNumber] {
				continue
			}
			seen["serial:"+d.SerialNumber] = true
		}
		if d.Status.State == "Absent" {
			continue
		}
		disk := Disk{ID: d.RID, Name: d.Name, Model: d.Model, SerialNumber: d.SerialNumber, Kind: driveKind(d.MediaType, d.Protocol), Path: l}
		if disk.ID == "" {
			// Drives without Id exist (and ones without Name); the path still identifies them.
			disk.ID = relPath(l)
		}
		if d.CapacityBytes != nil {
			disk.CapacityBytes = *d.CapacityBytes
		}
		inv.Disks = append(inv.Disks, disk)
	}
	if len(inv.Disks) > 0 || s.SimpleStorage.ID == "" {
		return nil
	}
	ms, err := c.members(ctx, s.SimpleStorage.ID)
	if err != nil {
		return optional(err)
	}
	for _, m := range ms {
		var ss struct {
			Devices []struct {
				Name, Model, Manufacturer string
				CapacityBytes             *int64
				Status                    status
			}
		}
		if _, err := c.get(ctx, m, &ss); err != nil {
			return err
		}
		for i, d := range ss.Devices {
			if d.Status.State == "Absent" {
				continue
			}
			disk := Disk{Name: d.Name, Model: d.Model, Path: fmt.Sprintf("%s#/Devices/%d", m, i)}
			if disk.Name == "" {
				disk.ID = fmt.Sprintf("%s/Devices/%d", relPath(m), i)
			}
			if d.CapacityBytes != nil {
				disk.CapacityBytes = *d.CapacityBytes
			}
			inv.Disks = append(inv.Disks, disk)
		}
	}
	return nil
}
