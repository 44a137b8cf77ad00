# system.build.dist of a NixOS machine carried by a carrier (upstream's test
# does the same with a symlinkJoin): the toplevel's kernel and init, the
# bzImage/initrd netboot serves, machine.json, and build-mode = "carried".
# The toplevel itself is untouched, so the dist's machine.json.toplevel is the
# standalone build's toplevel.
{ config, confMachine, bbDrv, ... }:
{
  system.build.dist = let
    inherit (config.system.build) toplevel kernel initrd;
  in bbDrv "nixos-dist-${config.networking.hostName}" ''
    bb=/bin/busybox
    $bb mkdir -p $out
    $bb ln -s ${toplevel}/kernel $out/kernel
    $bb ln -s ${toplevel}/init $out/init
    $bb ln -s ${kernel}/bzImage $out/bzImage
    $bb ln -s ${initrd}/initrd $out/initrd
    printf '%s' "$machineJson" > $out/machine.json
    printf 'carried\n' > $out/build-mode
  '' { machineJson = import ./machine-json.nix { inherit config confMachine; }; };
}
