# What a system records about its sources (upstream's swpins.nix, inputs-info.nix
# and configuration-info.nix): the special arguments swpinsInfo, inputsInfo and
# configurationInfo as read-only options and as /etc/confctl/*.json.
# /etc/confctl/swpins-info.json is written when the machine has no inputs
# information (legacy mode), as upstream does.
{ lib, swpinsInfo, inputsInfo, configurationInfo, ... }:
let
  inherit (lib) mkOption mkIf mkMerge types;
  json = v: builtins.toJSON v;
in
{
  options.confctl = {
    inputsInfo = mkOption {
      type = types.nullOr types.attrs;
      default = inputsInfo;
      description = "Flake input metadata, written to /etc/confctl/inputs-info.json (flake mode).";
    };
    configurationInfo = mkOption {
      type = types.nullOr types.attrs;
      default = configurationInfo;
      description = "Configuration source metadata, written to /etc/confctl/configuration-info.json.";
    };
    swpins = {
      core.pins = mkOption { type = types.attrsOf types.anything; default = { }; description = "Core software pins (legacy mode; carrier does not fetch pins)."; };
      core.channels = mkOption { type = types.listOf types.str; default = [ ]; description = "Channels used for the core pins (legacy mode)."; };
      channels = mkOption { type = types.attrsOf types.anything; default = { }; description = "Software pin channels (legacy mode)."; };
    };
  };

  config = mkMerge [
    (mkIf (inputsInfo == null) { environment.etc."confctl/swpins-info.json".text = json swpinsInfo; })
    (mkIf (inputsInfo != null) { environment.etc."confctl/inputs-info.json".text = json inputsInfo; })
    (mkIf (configurationInfo != null) { environment.etc."confctl/configuration-info.json".text = json configurationInfo; })
  ];
}
