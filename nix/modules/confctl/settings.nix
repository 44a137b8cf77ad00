# confctl's settings options (upstream's generations.nix, cli.nix and nix.nix),
# declared in every system as confctl does, so a system module may read or set
# them. Names, types and defaults are upstream's.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  generations = what: {
    min = mkOption { type = types.int; default = 5; description = "The minimum number of ${what} generations to be kept."; };
    max = mkOption { type = types.int; default = 30; description = "The maximum number of ${what} generations to be kept."; };
    maxAge = mkOption { type = types.int; default = 180 * 24 * 60 * 60; description = "Delete ${what} generations older than this many seconds."; };
  };
in
{
  options.confctl = {
    buildGenerations = generations "build";
    hostGenerations = generations "host" // {
      collectGarbage = mkOption { type = types.bool; default = true; description = "Run nix-collect-garbage"; };
    };
    list.columns = mkOption {
      type = types.listOf types.str;
      default = [ "name" "spin" "host.fqdn" ];
      description = "Columns of `ls`: names of options within cluster.<name>.";
    };
    nix = {
      maxJobs = mkOption {
        type = types.nullOr (types.either types.int (types.enum [ "auto" ]));
        default = null;
        description = "Maximum number of build jobs.";
      };
      nixPath = mkOption { type = types.listOf types.str; default = [ ]; description = "Extra NIX_PATH entries for every build."; };
      impureEval = mkOption { type = types.bool; default = false; description = "Impure evaluation (flake mode)."; };
      legacyNixPath = mkOption { type = types.bool; default = false; description = "-I mappings of selected inputs (flake mode)."; };
      legacyNixPathMap = mkOption {
        type = types.listOf types.str;
        default = [ "nixpkgs" "vpsadminos" "vpsadmin" ];
        description = "Inputs mapped to NIX_PATH when legacyNixPath is set.";
      };
    };
  };
}
