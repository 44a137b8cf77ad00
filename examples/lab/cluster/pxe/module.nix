# Metadata of lab machine pxe (NixOS); its system is ./config.nix.
{
  cluster.pxe = import ../../lib/lab-machine.nix { name = "pxe"; } // {
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
