# The lab's systems get a real kernel when one is put at ../boot/vmlinuz (the
# tests copy the Debian kernel there), so netboot dists boot under QEMU;
# otherwise the lab's text stand-in.
{
  lab.kernelImage = if builtins.pathExists ../boot/vmlinuz then ../boot/vmlinuz else null;
}
