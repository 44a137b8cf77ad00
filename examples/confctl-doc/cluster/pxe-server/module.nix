# The documentation's cluster/pxe-server/module.nix. The attribute set below is
# the documented text unchanged; what the documentation elides ("spin, host,
# etc.") is defined for the lab in ../../lab.nix.
{
  imports = [ ../../lab.nix ];

cluster.pxe-server = {
  # ... spin, host, etc.
  carrier = {
    enable = true;
    machines = [ { machine = "node1"; buildAttribute = [ "system" "build" "dist" ]; } ];
  };
};
}
