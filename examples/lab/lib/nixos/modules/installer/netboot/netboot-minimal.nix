# Stand-in for nixpkgs' nixos/modules/installer/netboot/netboot-minimal.nix (the lab
# has no nixpkgs; see ../../../../../README.md). Like the real one, it adds
# system.build.netbootRamdisk (`initrd`) and system.build.netbootIpxeScript
# (`netboot.ipxe`) next to system.build.kernel (`bzImage`), so a configuration
# can join them into a netboot dist.
#
# The ramdisk is a real initramfs (gzip'd newc cpio) built with busybox: static
# busybox and an /init that prints
#   NETBOOT-OK machine=<networking.hostName> gen=<N>
#   NETBOOT-CMDLINE: <the kernel command line>
# to the serial console and powers off, N being the generation number in the
# `httproot=.../<N>/initrd` parameter the carrier's netboot menus pass. With a real
# kernel (lab.kernelImage) the dist boots under QEMU.
{ config, bbDrv, ... }:
let
  inherit (config.system.build) toplevel;
  name = config.networking.hostName;
  init = ''
    #!/bin/busybox sh
    bb=/bin/busybox
    $bb mount -t proc proc /proc
    $bb mount -t devtmpfs devtmpfs /dev
    echo 1 > /proc/sys/kernel/printk
    out=/dev/ttyS0
    [ -c $out ] || out=/dev/console
    cmdline=$($bb cat /proc/cmdline)
    gen=$(echo "$cmdline" | $bb sed -n 's|.*httproot=[^ ]*/\([0-9][0-9]*\)/initrd.*|\1|p')
    $bb printf '\n%s\nNETBOOT-CMDLINE: %s\n' "NETBOOT-OK machine=${name} gen=''${gen:-0}" "$cmdline" > $out
    $bb sleep 0.2
    $bb poweroff -f
  '';
in
{
  system.build.netbootRamdisk = bbDrv "initrd-netboot-${name}" ''
    bb=/bin/busybox
    root=$TMPDIR/root
    $bb mkdir -p $root/bin $root/dev $root/proc $root/sys $out
    $bb cp /bin/busybox $root/bin/busybox
    $bb ln -s busybox $root/bin/sh
    printf '%s' "$init" > $root/init
    $bb chmod 755 $root/init
    cd $root
    $bb find . | $bb sort | $bb cpio -o -H newc -R 0:0 | $bb gzip -9n > $out/initrd
  '' { inherit init; };

  system.build.netbootIpxeScript = bbDrv "netboot-ipxe-${name}" ''
    /bin/busybox mkdir -p $out
    printf '#!ipxe\nkernel bzImage init=%s/init %s\ninitrd initrd\nboot\n' "${toplevel}" "$kernelParams" > $out/netboot.ipxe
  '' { kernelParams = builtins.concatStringsSep " " config.boot.kernelParams; };
}
