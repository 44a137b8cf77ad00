# Metadata of lab machine os1 (vpsAdminOS); its system is ./config.nix.
{
  cluster.os1 = import ../../lib/lab-machine.nix { name = "os1"; spin = "vpsadminos"; };
}
