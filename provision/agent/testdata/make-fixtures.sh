#!/bin/sh
# Builds the two fixture trees (run once; the result is committed). Symbolic links are relative so
# they resolve inside the tree, as the real /sys links do.
set -eu
cd "$(dirname "$0")"
rm -rf qemu-vm server-nvme
w() { mkdir -p "$(dirname "$1")"; printf '%s\n' "$2" > "$1"; }

# Shape 1: a QEMU VM: virtio NICs and disks under PCI functions, 2 CPUs, 1 GiB in 8 blocks.
r=qemu-vm
w $r/sys/class/dmi/id/sys_vendor "QEMU"
w $r/sys/class/dmi/id/product_name "Standard PC (i440FX + PIIX, 1996)"
w $r/sys/class/dmi/id/product_serial "PRYBAR-VM-0001"
w $r/sys/class/dmi/id/product_uuid "6F1C7A9E-2B4D-4C8E-9A31-0D5E7F6B1C22"
mkdir -p $r/proc
for i in 0 1; do printf 'processor\t: %s\nvendor_id\t: AuthenticAMD\nmodel name\t: QEMU TCG CPU version 2.5+\n\n' $i; done > $r/proc/cpuinfo
printf 'MemTotal:        1001484 kB\nMemFree:          900000 kB\n' > $r/proc/meminfo
w $r/sys/devices/system/memory/block_size_bytes 8000000
for i in 0 1 2 3 4 5 6 7; do w $r/sys/devices/system/memory/memory$i/online 1; done
mkdir -p $r/sys/bus/virtio/drivers/virtio_net $r/sys/bus/virtio/drivers/virtio_blk
for n in 0:3:virtio0:eth0:52:54:00:12:34:01 1:4:virtio1:eth1:52:54:00:12:34:02; do
  idx=${n%%:*}; rest=${n#*:}; slot=${rest%%:*}; rest=${rest#*:}; vd=${rest%%:*}; rest=${rest#*:}; ifn=${rest%%:*}; mac=${rest#*:}
  d=$r/sys/devices/pci0000:00/0000:00:0$slot.0/$vd
  mkdir -p $d/net/$ifn
  ln -s ../../../../bus/virtio/drivers/virtio_net $d/driver
  w $d/net/$ifn/address "$mac"
  w $d/net/$ifn/carrier $([ $idx = 0 ] && echo 1 || echo 0)
  w $d/net/$ifn/speed -1
  mkdir -p $r/sys/class/net
  ln -s ../../devices/pci0000:00/0000:00:0$slot.0/$vd/net/$ifn $r/sys/class/net/$ifn
  ln -s ../../../$vd $d/net/$ifn/device
done
mkdir -p $r/sys/devices/virtual/net/lo && w $r/sys/devices/virtual/net/lo/address 00:00:00:00:00:00
ln -s ../../devices/virtual/net/lo $r/sys/class/net/lo
for n in vda:5:virtio2:4194304:vd-small vdb:6:virtio3:16777216:vd-big; do
  name=${n%%:*}; rest=${n#*:}; slot=${rest%%:*}; rest=${rest#*:}; vd=${rest%%:*}; rest=${rest#*:}; size=${rest%%:*}; ser=${rest#*:}
  d=$r/sys/devices/pci0000:00/0000:00:0$slot.0/$vd
  mkdir -p $d/block/$name/queue
  ln -s ../../../../bus/virtio/drivers/virtio_blk $d/driver
  w $d/block/$name/size $size
  w $d/block/$name/serial $ser
  w $d/block/$name/queue/rotational 1
  ln -s ../../../$vd $d/block/$name/device
  mkdir -p $r/sys/block
  ln -s ../devices/pci0000:00/0000:00:0$slot.0/$vd/block/$name $r/sys/block/$name
done
mkdir -p $r/sys/devices/virtual/block/loop0 && w $r/sys/devices/virtual/block/loop0/size 1000
ln -s ../devices/virtual/block/loop0 $r/sys/block/loop0

# Shape 2: a rack server: Intel NICs directly on PCI functions (ixgbe, 10 Gb/s), a bond, an NVMe
# and a rotational SATA disk with a WWN, 4 CPUs, no memory hotplug directory (MemTotal is used).
r=server-nvme
w $r/sys/class/dmi/id/sys_vendor "Dell Inc."
w $r/sys/class/dmi/id/product_name "PowerEdge R640"
w $r/sys/class/dmi/id/product_serial "7XK2PQ2"
w $r/sys/class/dmi/id/product_uuid "4c4c4544-0058-4b10-8032-b7c04f505132"
mkdir -p $r/proc
for i in 0 1 2 3; do printf 'processor\t: %s\nmodel name\t: Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz\nflags\t\t: fpu vme\n\n' $i; done > $r/proc/cpuinfo
printf 'MemTotal:       65843128 kB\nMemFree:        60000000 kB\n' > $r/proc/meminfo
mkdir -p $r/sys/bus/pci/drivers/ixgbe $r/sys/bus/pci/drivers/nvme $r/sys/bus/pci/drivers/ahci $r/sys/class/net $r/sys/block
for n in 0:eno1:24:6e:96:aa:bb:01:1 1:eno2:24:6e:96:aa:bb:02:0; do
  fn=${n%%:*}; rest=${n#*:}; ifn=${rest%%:*}; rest=${rest#*:}; mac=${rest%:*}; link=${rest##*:}
  d=$r/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.$fn
  mkdir -p $d/net/$ifn
  ln -s ../../../../bus/pci/drivers/ixgbe $d/driver
  w $d/net/$ifn/address "$(echo $mac | tr a-f A-F)"
  w $d/net/$ifn/carrier $link
  w $d/net/$ifn/speed $([ $link = 1 ] && echo 10000 || echo -1)
  ln -s ../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.$fn/net/$ifn $r/sys/class/net/$ifn
  ln -s ../../../0000:3b:00.$fn $d/net/$ifn/device
done
mkdir -p $r/sys/devices/virtual/net/bond0 && w $r/sys/devices/virtual/net/bond0/address 24:6e:96:aa:bb:01
ln -s ../../devices/virtual/net/bond0 $r/sys/class/net/bond0
d=$r/sys/devices/pci0000:00/0000:00:1d.0/0000:5e:00.0/nvme/nvme0
mkdir -p $d/nvme0n1/queue
ln -s ../../../../bus/pci/drivers/nvme $r/sys/devices/pci0000:00/0000:00:1d.0/0000:5e:00.0/driver
w $d/model "Dell Express Flash NVMe P4610 1.6TB SFF"
w $d/serial "PHLN012345671P6AGN"
w $d/nvme0n1/size 3125627568
w $d/nvme0n1/queue/rotational 0
w $d/nvme0n1/wwid "eui.01000000000000005cd2e4a1b2c3d4e5"
ln -s ../../nvme0 $d/nvme0n1/device
ln -s ../devices/pci0000:00/0000:00:1d.0/0000:5e:00.0/nvme/nvme0/nvme0n1 $r/sys/block/nvme0n1
d=$r/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0
mkdir -p $d/block/sda/queue
w $d/model "ST2000NM0055-1V4"
w $d/wwid "naa.5000c500a1b2c3d4"
w $d/block/sda/size 3907029168
w $d/block/sda/queue/rotational 1
ln -s ../../../0:0:0:0 $d/block/sda/device
ln -s ../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda $r/sys/block/sda
d=$r/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1
mkdir -p $d && w $d/size 1000
