# System of node1 (NixOS); also carried by pxe as pxe#node1 (system.build.dist).
{ config, ... }:
{
  imports = [ ../../modules/carried-nixos.nix ];
  networking.hostName = "node1";
  confctl.marker = "A";
  boot.kernelParams = [ "console=ttyS0" ];
  lab.macs = [ "52:54:00:12:34:56" ];
  environment.etc."motd".text = "node1 of the carrier lab\n";
}
