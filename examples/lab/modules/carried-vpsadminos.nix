# Adds machine.json and build-mode to vpsAdminOS' own dist (bzImage, initrd,
# root.squashfs, kernel-params) through system.distBuilderCommands, as
# upstream's test does.
{ config, confMachine, ... }:
{
  system.distBuilderCommands = ''
    cat > $out/machine.json <<'MACHINE_JSON'
    ${import ./machine-json.nix { inherit config confMachine; }}
    MACHINE_JSON
    printf 'carried\n' > $out/build-mode
  '';
}
