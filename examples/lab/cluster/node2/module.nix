# Metadata of lab machine node2 (NixOS); its system is ./config.nix.
{
  cluster.node2 = import ../../lib/lab-machine.nix { name = "node2"; };
}
