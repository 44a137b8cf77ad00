# Stand-in for nixpkgs' nixos/lib/eval-config.nix (the lab has no nixpkgs; see
# ../../../README.md). Same entry point and argument shape as the real one:
#
#   import <nixpkgs/nixos/lib/eval-config.nix> { modules = [ ... ]; specialArgs = { ... }; }
#
# returns { config, options, ... }; config.system.build.toplevel is the system.
# Arguments the real one takes and this one does not need (system, pkgs,
# baseModules, lib, check, ...) are accepted and ignored.
{ modules ? [ ], specialArgs ? { }, extraModules ? [ ], ... }:
import ../../../system.nix {
  spin = "nixos";
  modules = modules ++ extraModules;
  inherit specialArgs;
}
