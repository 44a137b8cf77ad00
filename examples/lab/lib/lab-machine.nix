# What every lab machine's metadata shares: its SSH target is the lab host alias
# `<name>.lab` (`carrier lab up` starts one host per machine), it builds with the
# lab's stand-ins for nixpkgs and vpsAdminOS (found relative to this file wherever
# the directory is checked out; toString: no store copy), and its health check is a
# command (lab hosts run no systemd).
{ name, spin ? "nixos" }:
{
  inherit spin;
  host = { inherit name; domain = "lab"; target = "${name}.lab"; };
  nix.nixPath = [
    "nixpkgs=${toString ./.}"
    "vpsadminos=${toString ./.}"
  ];
  tags = [ "lab" ];
  healthChecks.machineCommands = [ { description = "true"; command = [ "true" ]; } ];
  healthChecks.systemd.enable = false;
}
