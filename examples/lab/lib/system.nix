# The lab's miniature operating system: what the nixpkgs and vpsAdminOS stand-ins
# (nixpkgs/nixos/lib/eval-config.nix, vpsadminos/os/default.nix) share.
#
# Why it exists: carrier must build machines for real (a store path with
# bin/switch-to-configuration, a carried dist with machine.json) on hosts that
# have Nix but no nixpkgs. These modules give the handful of options the lab's
# configs use the NixOS names, and build everything with Debian's static
# busybox (`/bin/busybox`, visible in the build sandbox through nix.conf's
# `extra-sandbox-paths = /bin/busybox`, and present on the lab's sshd "hosts",
# which run on this same machine).
#
# The module system is carrier's own (nix/lib/modules.nix), found as
# <carrier/lib/modules.nix>: carrier puts `-I carrier=<its Nix code>` on every
# build, as confctl puts `confctl=<root>` on NIX_PATH. That keeps this
# directory relocatable (tests copy it) without a second copy of the module
# system.
{ spin, modules, specialArgs ? { } }:
let
  lib = import <carrier/lib/modules.nix>;
  inherit (lib) types mkOption;
  b = builtins;
  escapeShellArg = s: "'" + b.replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # A derivation built by `busybox sh -euc <script>`.
  bbDrv = name: script: attrs: derivation ({
    inherit name;
    system = b.currentSystem;
    builder = "/bin/busybox";
    args = [ "sh" "-euc" script ];
    PATH = "/bin-not-set";
  } // attrs);

  baseModule = { config, ... }: {
    options = {
      networking.hostName = mkOption { type = types.str; default = spin; description = "The host name."; };
      confctl.marker = mkOption { type = types.str; default = ""; description = "A free string written to /etc/confctl-marker (the acceptance tests' A/B)."; };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule ({ name, ... }: {
          options.text = mkOption { type = types.lines; description = "Content of /etc/${name}."; };
        }));
        default = { };
        description = "Files of the system's etc/.";
      };
      boot.kernelParams = mkOption { type = types.listOf types.str; default = [ ]; description = "Kernel command line parameters."; };
      lab.failActivation = mkOption { type = types.bool; default = false; description = "Make switch-to-configuration fail (exit 1) before it changes anything."; };
      lab.hangActivation = mkOption { type = types.bool; default = false; description = "Make switch and test hang after switching."; };
      lab.dropDeployer = mkOption { type = types.bool; default = false; description = "Make switch and test close the deployer's SSH connection after switching."; };
      lab.macs = mkOption { type = types.listOf types.str; default = [ ]; description = "MAC addresses, for netboot (machine.json macs)."; };
      lab.kernelVersion = mkOption { type = types.str; default = "6.1.0-lab"; description = "Version in the kernel's store name (-linux-<version>)."; };
      system.build = mkOption { type = types.lazyAttrsOf types.unspecified; default = { }; description = "Build results (toplevel, dist, ...)."; };
      system.spin = mkOption { type = types.str; default = spin; description = "nixos or vpsadminos (set by the entry point)."; };
    };
    config = {
      environment.etc.confctl-marker.text = config.confctl.marker;
      system.build = rec {
        kernel = bbDrv "linux-${config.lab.kernelVersion}" ''
          /bin/busybox mkdir -p $out
          echo "lab kernel ${config.lab.kernelVersion}" > $out/bzImage
        '' { };
        initrd = bbDrv "initrd-${config.networking.hostName}" ''
          /bin/busybox mkdir -p $out
          echo "lab initrd of ${config.networking.hostName}" > $out/initrd
        '' { };
        toplevel = bbDrv "${spin}-system-${config.networking.hostName}" ''
          bb=/bin/busybox
          $bb mkdir -p $out/bin $out/etc
          $bb ln -s ${kernel}/bzImage $out/kernel
          $bb ln -s ${initrd}/initrd $out/initrd
          printf '%s' "$kernelParams" > $out/kernel-params
          printf '%s\n' "${spin}" > $out/spin
          printf '#!/bin/busybox sh\necho "lab init of %s"\n' "$out" > $out/init
          printf '%s' "$switchScript" | $bb sed "s|@out@|$out|g" > $out/bin/switch-to-configuration
          $bb chmod 755 $out/init $out/bin/switch-to-configuration
          ${lib.concatStrings (lib.mapAttrsToList (name: f: ''
            $bb mkdir -p "$($bb dirname "$out/etc/${name}")"
            printf '%s' ${escapeShellArg f.text} > "$out/etc/${name}"
          '') config.environment.etc)}
        '' {
          kernelParams = b.concatStringsSep " " config.boot.kernelParams;
          switchScript = import ./switch-to-configuration.nix { inherit (config.lab) failActivation dropDeployer hangActivation; };
        };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [ baseModule ] ++ modules;
    specialArgs = { inherit bbDrv; } // specialArgs;
  };
in
evaluated // { inherit bbDrv; }
