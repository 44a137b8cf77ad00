# Evaluates confctl's settings (`confctl.*`: generation limits, list columns, nix
# options) of a configuration directory to plain JSON: the defaults of
# modules/confctl/settings.nix, overridden by `<confDir>/configs/confctl.nix` when it
# exists, as upstream reads them.
#
#   nix-instantiate --eval --strict --json nix/eval-settings.nix --argstr confDir /abs/conf
{ confDir }:
let
  lib = import ./lib/modules.nix;
  settingsFile = confDir + "/configs/confctl.nix";
in
(lib.evalModules {
  modules = [ ./modules/confctl/settings.nix ] ++ lib.optional (builtins.pathExists settingsFile) settingsFile;
}).config.confctl
