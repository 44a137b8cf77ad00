{ config, ... }:
{
  confctl.carrier.netboot = {
    enable = true;
    host = "192.168.100.5";
    allowedIPv4Ranges = [ "192.168.100.0/24" ];
  };
  confctl.carrier.onChangeCommands = ''
    ls -l /nix/var/nix/profiles/confctl-*
  '';
}
