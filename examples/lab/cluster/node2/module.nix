# Metadata of lab machine node2 (nixos); its system is ./config.nix.
{ config, ... }:
{
  cluster.node2 = {
    spin = "nixos";
    host = { name = "node2"; domain = "lab"; target = "node2.lab"; };
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
  };
}
