# The lab's systems get a real kernel when one is put at ../boot/vmlinuz (the
# tests copy the Debian kernel there), so netboot dists boot under QEMU;
# otherwise the lab's text stand-in. Kernel modules put in ../boot/modules (with
# a `load-order` file: the kernel's NIC driver) go into the netboot ramdisk, which
# then checks in with carrier serve when its kernel command line says where.
{
  lab.kernelImage = if builtins.pathExists ../boot/vmlinuz then ../boot/vmlinuz else null;
  lab.initrdModules = if builtins.pathExists ../boot/modules then ../boot/modules else null;
}
