# Metadata of lab machine pxe (nixos); its system is ./config.nix.
{ config, ... }:
{
  cluster.pxe = {
    spin = "nixos";
    host = { name = "pxe"; domain = "lab"; target = "pxe.lab"; };
    # The lab's stand-ins for nixpkgs and vpsAdminOS, found relative to this
    # file wherever the directory is checked out (toString: no store copy).
    nix.nixPath = [
      "nixpkgs=${toString ../../lib/nixpkgs}"
      "vpsadminos=${toString ../../lib/vpsadminos}"
    ];
    tags = [ "lab" ];
    healthChecks.machineCommands = [ { description = "true"; command = [ "true" ]; } ];
    # lab hosts run no systemd: only the command check applies
    healthChecks.systemd.enable = false;

    # The carrier: keeps the carried machines' dists as profiles
    # /nix/var/nix/profiles/confctl-<alias> and netboots them.
    carrier = {
      enable = true;
      machines = [
        { machine = "node1"; alias = null; buildAttribute = [ "system" "build" "dist" ]; }
        { machine = "os1"; alias = null; buildAttribute = [ "system" "build" "dist" ]; }
      ];
    };
  };
}
