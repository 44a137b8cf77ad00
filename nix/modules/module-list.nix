# The modules carrier adds to every system, by spin (what confctl's
# nix/modules/module-list.nix and system-list.nix add): confctl's settings and
# source records for both spins; the carrier and netboot server (NixOS only,
# as upstream: only NixOS machines can be carriers), kexec-netboot and the host
# name for both.
let
  shared = [ ./confctl/settings.nix ./confctl/info.nix ./confctl/host.nix ./confctl/kexec-netboot.nix ];
in
{
  nixos = shared ++ [ ./carrier.nix ];
  vpsadminos = shared;
}
