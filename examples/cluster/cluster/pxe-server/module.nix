# The netboot server: a NixOS carrier. It carries two machines that exist
# only as PXE images (their profiles live on this server as
# /nix/var/nix/profiles/confctl-<alias>):
#   pxe-server#node1  - the vpsAdminOS hypervisor prg/node1, under an alias
#   pxe-server#rescue - the NixOS rescue system, under its own name
{ config, lib, ... }:
{
  cluster.pxe-server = {
    spin = "nixos";

    host = {
      name = "pxe-server";
      location = "prg";
      domain = "example.org";
    };

    addresses.v4 = [ { address = "192.0.2.10"; prefix = 24; } ];

    labels = {
      role = "pxe";
      dc = "prg";
    };
    tags = [ "pxe" "infra" ];

    carrier = {
      enable = true;
      machines = [
        {
          machine = "prg/node1";
          alias = "node1";
          buildAttribute = [ "system" "build" "dist" ];
          labels = { boot = "pxe"; };
          tags = [ "netboot" ];
          hostGenerations = { min = 2; max = 5; };
        }
        {
          machine = "rescue";
          buildAttribute = [ "system" "build" "dist" ];
          tags = [ "netboot" "rescue" ];
          buildGenerations.max = 3;
        }
      ];
    };

    healthChecks.systemd.unitProperties = {
      "netboot-atftpd.service" = [ { property = "ActiveState"; value = "active"; } ];
      "nginx.service" = [ { property = "ActiveState"; value = "active"; } ];
    };

    hostGenerations = { min = 5; max = 20; maxAge = 90 * 24 * 60 * 60; };
  };
}
