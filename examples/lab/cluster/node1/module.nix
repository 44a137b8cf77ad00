# Metadata of lab machine node1 (NixOS); its system is ./config.nix.
{
  cluster.node1 = import ../../lib/lab-machine.nix { name = "node1"; };
}
