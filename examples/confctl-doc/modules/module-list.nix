# The configuration's own system modules, by spin (confctl's modules/module-list.nix).
{
  nixos = [ ./lab-kernel.nix ];
  vpsadminos = [ ];
}
