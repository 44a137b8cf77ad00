# Metadata of node1, the carried machine (the documentation does not show it):
# its MAC for the carrier's per-MAC boot entry. Spin, host and the lab's
# stand-ins come from ../../lab.nix.
{
  imports = [ ../../lab.nix ];
  cluster.node1.netboot = { enable = true; macs = [ "52:54:00:12:34:56" ]; };
}
