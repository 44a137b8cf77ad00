# NixOS module for a carrier: the machine that holds carried machines' profiles
# (/nix/var/nix/profiles/confctl-<alias>) and, with netboot enabled, serves them
# over TFTP (atftpd) and HTTP (nginx).
#
# carrier's build imports it into every NixOS machine (nix/modules/module-list.nix),
# as confctl does, so a configuration never imports it. It provides the options
# upstream confctl users already write:
#   confctl.carrier.onChangeCommands
#   confctl.carrier.netboot.{enable, host, enableACME, memtest86.{enable,params},
#                            isoImages, allowedIPv4Ranges, tftp.bindAddress}
# plus confctl.carrier.{enable,package}. `enable` defaults to the machine's
# cluster.<name>.carrier.enable (the special argument confMachine), so the
# metadata alone makes a machine a carrier, and netboot.enable alone turns the
# netboot server on. It wires `carrier profile set|delete-generations` (run on
# the carrier by `carrier deploy <carrier>#<machine>`) to run the on-change
# commands, with `build-netboot-server` (upstream's command name: `carrier
# netboot build` with this system's configuration) first among them when
# netboot is enabled.
#
# Needs nixpkgs (pkgs.atftp, pkgs.syslinux, pkgs.memtest86plus, nginx) or a
# stand-in providing them (examples/lab). See docs/nixos-module.md.
{ config, lib, pkgs, confMachine, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge mkBefore types optional optionalString
    concatMapStringsSep concatStringsSep baseNameOf;

  cfg = config.confctl.carrier;
  nb = cfg.netboot;

  baseDir = "/var/lib/confctl/carrier/netboot";
  tftpRoot = "${baseDir}/tftp";
  httpRoot = "${baseDir}/http";

  netbootConfig = pkgs.writeText "carrier-netboot.json" (builtins.toJSON {
    inherit tftpRoot httpRoot;
    hostName = config.networking.hostName;
    httpUrl = "http://${nb.host}";
    syslinux = "${pkgs.syslinux}/share/syslinux";
    memtest =
      if nb.memtest86.enable
      then { file = "${pkgs.memtest86plus}/memtest.bin"; params = nb.memtest86.params; }
      else null;
    isoImages = map
      (img: { file = "${img.file}"; label = if img.label == "" then baseNameOf (toString img.file) else img.label; })
      nb.isoImages;
    profilesDir = "/nix/var/nix/profiles";
    lockFile = "/run/carrier/netboot.lock";
  });

  # Upstream's command name; takes no arguments, the configuration is baked in.
  buildNetbootServer = pkgs.writeShellScriptBin "build-netboot-server" ''
    exec ${cfg.package}/bin/carrier netboot build --config ${netbootConfig}
  '';

  onChangeScript = pkgs.writeShellScript "carrier-on-change" cfg.onChangeCommands;

  # Read by `carrier profile ...`: where profiles live, what runs after a change.
  hostConfig = pkgs.writeText "carrier-host.json" (builtins.toJSON {
    profilesDir = "/nix/var/nix/profiles";
    lockFile = "/run/carrier/profiles.lock";
    onChange = [ [ "${onChangeScript}" ] ];
    hookTimeout = cfg.onChangeTimeout;
    lockTimeout = cfg.lockTimeout;
  });

  isoImageType = types.submodule {
    options = {
      file = mkOption { type = types.path; description = "ISO image booted through memdisk."; };
      label = mkOption { type = types.str; default = ""; description = "Menu label; the file's name when empty."; };
    };
  };
in
{
  options.confctl.carrier = {
    enable = mkOption {
      type = types.bool;
      default = (confMachine.carrier or { }).enable or false;
      defaultText = "cluster.<name>.carrier.enable";
      description = "The carrier role (carried profiles and on-change hooks).";
    };

    package = mkOption {
      type = types.package;
      default = pkgs.carrier;
      defaultText = "pkgs.carrier";
      description = "The carrier package providing the `carrier` binary.";
    };

    onChangeCommands = mkOption {
      type = types.lines;
      default = "";
      description = "Shell commands run after a carried profile changed (set or generations deleted).";
    };

    onChangeTimeout = mkOption {
      type = types.ints.positive;
      default = 600;
      description = "Seconds the on-change script may run before it and its process group are killed.";
    };

    lockTimeout = mkOption {
      type = types.ints.positive;
      default = 120;
      description = "Seconds a profile change waits for another one on this carrier before it fails.";
    };

    netboot = {
      enable = mkEnableOption "the netboot (PXE) server built from the carried profiles";
      host = mkOption {
        type = types.str;
        description = "Host name or IP address the clients use; the nginx virtual host and http://<host>.";
      };
      enableACME = mkOption { type = types.bool; default = false; description = "Add TLS with ACME to the virtual host."; };
      memtest86 = {
        enable = mkOption { type = types.bool; default = true; description = "Offer Memtest86+ in the menus."; };
        params = mkOption { type = types.listOf types.str; default = [ ]; description = "Memtest86+ parameters."; };
      };
      isoImages = mkOption { type = types.listOf isoImageType; default = [ ]; description = "ISO images in the menus."; };
      allowedIPv4Ranges = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "IPv4 ranges allowed to use TFTP and HTTP; empty means not restricted.";
      };
      tftp.bindAddress = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Address atftpd binds to.";
      };
    };
  };

  config = mkMerge [
    (mkIf cfg.enable {
      environment.systemPackages = [ cfg.package ];
      environment.etc."carrier/host.json".source = hostConfig;
    })

    (mkIf nb.enable {
      confctl.carrier.onChangeCommands = mkBefore ''
        ${buildNetbootServer}/bin/build-netboot-server
        rc=$?
        if [ $rc != 0 ]; then
          echo "build-netboot-server failed with $rc"
          exit 1
        fi
      '';

      environment.systemPackages = [ buildNetbootServer ];

      environment.etc."carrier/netboot.json".source = netbootConfig;

      systemd.tmpfiles.rules = [ "d ${baseDir} 0755 root root -" "d /run/carrier 0755 root root -" ];

      systemd.services.netboot-atftpd = {
        description = "TFTP Server for Netboot";
        after = [ "network.target" ];
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = concatStringsSep " " ([ "${pkgs.atftp}/bin/atftpd" "--daemon" "--no-fork" ]
          ++ optional (nb.tftp.bindAddress != null) "--bind-address ${nb.tftp.bindAddress}"
          ++ [ tftpRoot ]);
      };

      services.nginx = {
        enable = true;
        appendConfig = "worker_processes auto;";
        virtualHosts.${nb.host} = {
          root = httpRoot;
          addSSL = nb.enableACME;
          enableACME = nb.enableACME;
          locations."/".extraConfig = ''
            autoindex on;
          '' + optionalString (nb.allowedIPv4Ranges != [ ]) ''
            ${concatMapStringsSep "\n" (r: "allow ${r};") nb.allowedIPv4Ranges}
            deny all;
          '';
        };
      };

      # Upstream opens udp/68 (the DHCP client port); carrier opens TFTP (69) and
      # HTTP(S) only: DHCP is provided elsewhere (see docs/nixos-module.md).
      networking.firewall.extraCommands = mkIf (nb.allowedIPv4Ranges != [ ]) (concatMapStringsSep "\n" (range:
        let dest = optionalString (nb.tftp.bindAddress != null) " -d ${nb.tftp.bindAddress}"; in ''
          iptables -A nixos-fw -p udp -s ${range}${dest} --dport 69 -j nixos-fw-accept
          iptables -A nixos-fw -p tcp -s ${range} --dport 80 -j nixos-fw-accept
        '' + optionalString nb.enableACME ''
          iptables -A nixos-fw -p tcp -s ${range} --dport 443 -j nixos-fw-accept
        '') nb.allowedIPv4Ranges);
    })
  ];
}
