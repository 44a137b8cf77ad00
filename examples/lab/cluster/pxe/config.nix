# System of pxe (NixOS), the carrier of node1 and os1.
{ config, ... }:
{
  networking.hostName = "pxe";
  confctl.marker = "A";
  environment.etc."motd".text = "pxe, the carrier of the lab\n";
}
