# System of os1 (vpsAdminOS); also carried by pxe as pxe#os1 (system.build.dist).
{ config, ... }:
{
  imports = [ ../../modules/carried-vpsadminos.nix ];
  networking.hostName = "os1";
  confctl.marker = "A";
  boot.kernelParams = [ "console=ttyS0" "quiet" ];
  lab.macs = [ "52:54:00:12:34:57" ];
}
