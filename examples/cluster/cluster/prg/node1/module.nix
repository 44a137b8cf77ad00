# A vpsAdminOS hypervisor booted over PXE from pxe-server (carried as
# pxe-server#node1). It has no SSH target of its own: it is deployed by
# deploying its carried variant to the carrier.
{ config, lib, ... }:
{
  cluster."prg/node1" = {
    spin = "vpsadminos";

    host = {
      name = "node1";
      location = "prg";
      domain = "example.org";
      target = null;
    };

    addresses = {
      v4 = [ { address = "192.0.2.21"; prefix = 24; } ];
      v6 = [ { address = "2001:db8::21"; prefix = 64; } ];
    };

    netboot = {
      enable = true;
      macs = [ "52:54:00:12:34:21" "52:54:00:12:34:22" ];
    };

    labels = {
      role = "hypervisor";
      dc = "prg";
    };
    tags = [ "hypervisor" "prg" ];
  };
}
