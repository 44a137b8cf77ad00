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
#
# When the kernel command line has the carrier's check-in parameters
# (`carrier.checkin=<url> carrier.carrier= carrier.machine= carrier.generation=
# carrier.token=`, docs/status.md) and lab.initrdModules has a NIC driver, it
# first loads the modules, configures eth0 by DHCP and POSTs the check-in (what a
# real machine's initrd or early unit does), printing `NETBOOT-CHECKIN: <answer>`
# (`204` when accepted; the HTTP error or `no network` otherwise).
{ config, bbDrv, ... }:
let
  inherit (config.system.build) toplevel;
  name = config.networking.hostName;
  modules = config.lab.initrdModules;
  # udhcpc's hook: apply the lease to the interface.
  dhcpScript = ''
    #!/bin/busybox sh
    bb=/bin/busybox
    case "$1" in
      bound|renew)
        $bb ip addr flush dev "$interface"
        $bb ip addr add "$ip/''${mask:-24}" dev "$interface"
        for r in $router; do $bb ip route add default via "$r" dev "$interface"; break; done
        ;;
    esac
  '';
  init = ''
    #!/bin/busybox sh
    bb=/bin/busybox
    $bb mount -t proc proc /proc
    $bb mount -t sysfs sysfs /sys
    $bb mount -t devtmpfs devtmpfs /dev
    echo 1 > /proc/sys/kernel/printk
    out=/dev/ttyS0
    [ -c $out ] || out=/dev/console
    cmdline=$($bb cat /proc/cmdline)
    gen=$(echo "$cmdline" | $bb sed -n 's|.*httproot=[^ ]*/\([0-9][0-9]*\)/initrd.*|\1|p')
    url= carrier= machine= generation= token=
    for p in $cmdline; do
      case "$p" in
        carrier.checkin=*) url=''${p#*=} ;;
        carrier.carrier=*) carrier=''${p#*=} ;;
        carrier.machine=*) machine=''${p#*=} ;;
        carrier.generation=*) generation=''${p#*=} ;;
        carrier.token=*) token=''${p#*=} ;;
      esac
    done
    checkin=
    if [ -n "$url" ]; then
      if [ -f /lib/modules/load-order ]; then
        for m in $($bb cat /lib/modules/load-order); do $bb insmod "/lib/modules/$m"; done
      fi
      if [ -e /sys/class/net/eth0 ]; then
        $bb ip link set eth0 up
        $bb udhcpc -i eth0 -q -n -t 5 -s /bin/dhcp-script > /dev/null 2>&1
        mac=$($bb cat /sys/class/net/eth0/address)
        # the command line goes into a JSON string: escape \ and "
        esc=$(printf '%s' "$cmdline" | $bb sed 's/[\\"]/\\&/g')
        body=$(printf '{"carrier":"%s","machine":"%s","generation":%s,"mac":"%s","cmdline":"%s"}' \
          "$carrier" "$machine" "$generation" "$mac" "$esc")
        if $bb wget -q -O /dev/null -S --header "Authorization: Bearer $token" \
          --header "Content-Type: application/json" --post-data "$body" "$url" 2> /tmp/wget.log; then
          checkin=$($bb sed -n 's|^ *HTTP/[0-9.]* \([0-9]*\).*|\1|p' /tmp/wget.log | $bb tail -n 1)
        else
          checkin="failed: $($bb tr '\n' ' ' < /tmp/wget.log)"
        fi
      else
        checkin="no network (no eth0)"
      fi
    fi
    $bb printf '\n%s\nNETBOOT-CMDLINE: %s\n' "NETBOOT-OK machine=${name} gen=''${gen:-0}" "$cmdline" > $out
    [ -z "$url" ] || $bb printf 'NETBOOT-CHECKIN: %s\n' "$checkin" > $out
    $bb sleep 0.2
    $bb poweroff -f
  '';
in
{
  system.build.netbootRamdisk = bbDrv "initrd-netboot-${name}" ''
    bb=/bin/busybox
    root=$TMPDIR/root
    $bb mkdir -p $root/bin $root/dev $root/proc $root/sys $root/tmp $root/lib/modules $out
    $bb cp /bin/busybox $root/bin/busybox
    $bb ln -s busybox $root/bin/sh
    printf '%s' "$init" > $root/init
    printf '%s' "$dhcpScript" > $root/bin/dhcp-script
    $bb chmod 755 $root/init $root/bin/dhcp-script
    ${if modules == null then "" else ''
      $bb cp ${modules}/load-order $root/lib/modules/
      for m in $($bb cat ${modules}/load-order); do $bb cp "${modules}/$m" $root/lib/modules/; done
    ''}
    cd $root
    $bb find . | $bb sort | $bb cpio -o -H newc -R 0:0 | $bb gzip -9n > $out/initrd
  '' { inherit init dhcpScript; };

  system.build.netbootIpxeScript = bbDrv "netboot-ipxe-${name}" ''
    /bin/busybox mkdir -p $out
    printf '#!ipxe\nkernel bzImage init=%s/init %s\ninitrd initrd\nboot\n' "${toplevel}" "$kernelParams" > $out/netboot.ipxe
  '' { kernelParams = builtins.concatStringsSep " " config.boot.kernelParams; };
}
