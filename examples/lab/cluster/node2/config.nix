# System of node2 (NixOS), a plain standalone machine.
{ config, ... }:
{
  networking.hostName = "node2";
  confctl.marker = "A";
  environment.etc."motd".text = "node2 of the carrier lab\n";
}
