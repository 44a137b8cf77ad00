# confctl.programs.kexec-netboot (spec 3.7), on NixOS and vpsAdminOS: the
# `kexec-netboot` command of a netbooted machine, `carrier kexec-netboot` with this
# machine's fqdn (confMachine.host.fqdn) and kexec-tools' kexec baked in.
{ config, lib, pkgs, confMachine, ... }:
let
  cfg = config.confctl.programs.kexec-netboot;
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
  fqdn = (confMachine.host or { }).fqdn or null;
  wrapper = pkgs.writeShellScriptBin "kexec-netboot" ''
    ${lib.optionalString (fqdn != null) "export CARRIER_MACHINE_FQDN=${quote fqdn}"}
    export CARRIER_KEXEC=${pkgs.kexec-tools}/bin/kexec
    exec ${cfg.package}/bin/carrier kexec-netboot "$@"
  '';
in
{
  options.confctl.programs.kexec-netboot = {
    enable = lib.mkEnableOption "kexec-netboot, to kexec into another generation the carrier offers";
    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.carrier;
      defaultText = "pkgs.carrier";
      description = "The carrier package providing `carrier kexec-netboot`.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ wrapper ];
  };
}
