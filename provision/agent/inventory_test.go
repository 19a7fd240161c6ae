package agent

import (
	"reflect"
	"testing"
)

// The fixture trees are built by testdata/make-fixtures.sh (committed with its output): a QEMU VM
// (virtio under PCI functions, memory blocks) and a rack server (Intel NICs on PCI functions, a
// bond, NVMe plus SATA with WWNs, no memory blocks).
func TestCollectFixtures(t *testing.T) {
	cases := map[string]Inventory{
		"qemu-vm": {
			DMI:         DMI{Vendor: "QEMU", Product: "Standard PC (i440FX + PIIX, 1996)", Serial: "PRYBAR-VM-0001", UUID: "6f1c7a9e-2b4d-4c8e-9a31-0d5e7f6b1c22"},
			CPU:         CPU{Count: 2, Model: "QEMU TCG CPU version 2.5+"},
			MemoryBytes: 1 << 30,
			NICs: []NIC{
				{Name: "eth0", MAC: "52:54:00:12:34:01", Driver: "virtio_net", Link: true, PCI: "0000:00:03.0"},
				{Name: "eth1", MAC: "52:54:00:12:34:02", Driver: "virtio_net", Link: false, PCI: "0000:00:04.0"},
			},
			Disks: []Disk{
				{Name: "vda", SizeBytes: 2 << 30, Serial: "vd-small", Rotational: true},
				{Name: "vdb", SizeBytes: 8 << 30, Serial: "vd-big", Rotational: true},
			},
		},
		"server-nvme": {
			DMI:         DMI{Vendor: "Dell Inc.", Product: "PowerEdge R640", Serial: "7XK2PQ2", UUID: "4c4c4544-0058-4b10-8032-b7c04f505132"},
			CPU:         CPU{Count: 4, Model: "Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz"},
			MemoryBytes: 65843128 * 1024,
			NICs: []NIC{
				{Name: "eno1", MAC: "24:6e:96:aa:bb:01", Driver: "ixgbe", SpeedMbps: 10000, Link: true, PCI: "0000:3b:00.0"},
				{Name: "eno2", MAC: "24:6e:96:aa:bb:02", Driver: "ixgbe", Link: false, PCI: "0000:3b:00.1"},
			},
			Disks: []Disk{
				{Name: "nvme0n1", SizeBytes: 3125627568 * 512, Model: "Dell Express Flash NVMe P4610 1.6TB SFF", Serial: "PHLN012345671P6AGN", WWN: "eui.01000000000000005cd2e4a1b2c3d4e5"},
				{Name: "sda", SizeBytes: 3907029168 * 512, Model: "ST2000NM0055-1V4", Rotational: true, WWN: "naa.5000c500a1b2c3d4"},
			},
		},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Collect("testdata/" + name)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Collect =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	if k := (Disk{Name: "nvme0n1"}).Kind(); k != "NVME" {
		t.Errorf("nvme kind %s", k)
	}
}

func TestCollectWrongRoot(t *testing.T) {
	if _, err := Collect(t.TempDir()); err == nil {
		t.Fatal("a root without /proc/cpuinfo gave an inventory, want an error")
	}
}

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline("console=ttyS0 prybar.url=http://10.0.0.1:8080/ prybar.machine=7 prybar.token=abc.def prybar.trace=t1 prybar.mac=52:54:00:AA:BB:CC quiet")
	want := Cmdline{URL: "http://10.0.0.1:8080", Token: "abc.def", Machine: 7, Trace: "t1", MAC: "52:54:00:aa:bb:cc"}
	if c != want {
		t.Errorf("ParseCmdline = %+v, want %+v", c, want)
	}
}
