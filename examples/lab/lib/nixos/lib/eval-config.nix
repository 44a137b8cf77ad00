# Stand-in for nixpkgs' nixos/lib/eval-config.nix (the lab has no nixpkgs; see
# ../../../README.md). Same entry point and argument shape as the real one:
#
#   import <nixpkgs/nixos/lib/eval-config.nix> { modules = [ ... ]; specialArgs = { ... }; }
#
# returns { config, options, ... }; config.system.build.toplevel is the system.
# `lib` (the module system evaluating the system: here carrier's) and `system`
# are taken when given (flake mode); other arguments of the real one (pkgs,
# baseModules, check, ...) are accepted and ignored.
{ modules ? [ ], specialArgs ? { }, extraModules ? [ ], ... }@args:
import ../../system.nix ({
  spin = "nixos";
  modules = modules ++ extraModules;
  inherit specialArgs;
} // builtins.intersectAttrs { lib = null; system = null; } args)
