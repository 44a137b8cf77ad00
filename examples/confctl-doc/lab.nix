# What the documented example leaves out, for the carrier lab: both machines are
# NixOS lab machines (host `<name>.lab`, the lab's stand-in nixpkgs on nix.nixPath,
# a command health check), see ../lab/lib/lab-machine.nix. Imported by both
# module.nix files (once: modules are de-duplicated by path).
{
  cluster.pxe-server = import ../lab/lib/lab-machine.nix { name = "pxe-server"; };
  cluster.node1 = import ../lab/lib/lab-machine.nix { name = "node1"; };
}
