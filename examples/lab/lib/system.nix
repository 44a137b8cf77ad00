# The lab's miniature operating system: what the nixpkgs and vpsAdminOS stand-ins
# (nixos/lib/eval-config.nix for <nixpkgs>, os/default.nix for <vpsadminos>) share.
#
# Why it exists: carrier must build machines for real (a store path with
# bin/switch-to-configuration, a carried dist with machine.json) on hosts that
# have Nix but no nixpkgs. These modules give the handful of options the lab's
# configs use the NixOS names, and build everything with Debian's static
# busybox (`/bin/busybox`, visible in the build sandbox through nix.conf's
# `extra-sandbox-paths = /bin/busybox`, and present on the lab's sshd "hosts",
# which run on this same machine).
#
# `pkgs` (pkgs.nix) has the few packages and builders the configurations and
# carrier's modules use (writeText, symlinkJoin, ..., carrier, atftp, syslinux,
# kexec-tools),
# and the options below include the NixOS ones carrier's modules set
# (environment.systemPackages, systemd, services, networking.firewall): they are
# accepted and, where the lab can show them, put into the toplevel (etc/, sw/bin).
#
# The module system is carrier's own (nix/lib/modules.nix), found as
# <carrier/lib/modules.nix>: carrier puts `-I carrier=<its Nix code>` on every
# build, as confctl puts `confctl=<root>` on NIX_PATH. That keeps this
# directory relocatable (tests copy it) without a second copy of the module
# system. In flake mode (flake.nix: pure evaluation, no search path) the
# module system and the system type are passed in.
{ spin, modules, specialArgs ? { }, lib ? import <carrier/lib/modules.nix>, system ? builtins.currentSystem }:
let
  inherit (lib) types mkOption;
  b = builtins;
  escapeShellArg = s: "'" + b.replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  pkgs = import ./pkgs.nix { inherit system; };
  inherit (pkgs) bbDrv;
  # Free-form NixOS option trees the lab accepts but does not model.
  loose = description: mkOption { type = types.attrsOf types.anything; default = { }; inherit description; };

  baseModule = { config, ... }: {
    options = {
      networking.hostName = mkOption { type = types.str; default = spin; description = "The host name."; };
      networking.domain = mkOption { type = types.nullOr types.str; default = null; description = "The domain."; };
      networking.firewall.extraCommands = mkOption { type = types.lines; default = ""; description = "Firewall rules (written to etc/lab-firewall)."; };
      environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; description = "Packages whose bin/ is linked into the toplevel's sw/bin."; };
      systemd = loose "systemd units and settings (accepted, not run: lab hosts have no systemd).";
      services = loose "Services (accepted, not run).";
      system.nixos.version = mkOption { type = types.str; default = "26.05.lab"; description = "The OS version (machine.json)."; };
      system.nixos.revision = mkOption { type = types.nullOr types.str; default = "0123456789abcdef0123456789abcdef01234567"; description = "The OS source revision (machine.json)."; };
      lab.initrdModules = mkOption { type = types.nullOr types.path; default = null; description = "A directory of kernel modules (*.ko of lab.kernelImage's kernel) and a `load-order` file naming them one per line: the netboot ramdisk loads them (a NIC driver, for the check-in)."; };
      lab.kernelImage = mkOption { type = types.nullOr types.path; default = null; description = "A real kernel image to use as bzImage (for QEMU boots); a text stand-in when null."; };
      confctl.marker = mkOption { type = types.str; default = ""; description = "A free string written to /etc/confctl-marker (the acceptance tests' A/B)."; };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule ({ name, ... }: {
          options.text = mkOption { type = types.nullOr types.lines; default = null; description = "Content of /etc/${name}."; };
        options.source = mkOption { type = types.nullOr (types.either types.path types.package); default = null; description = "File linked as /etc/${name} (when text is null)."; };
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
        kernel = bbDrv "linux-${config.lab.kernelVersion}" (
          if config.lab.kernelImage == null then ''
            /bin/busybox mkdir -p $out
            echo "lab kernel ${config.lab.kernelVersion}" > $out/bzImage
          '' else ''
            /bin/busybox mkdir -p $out
            /bin/busybox cp ${config.lab.kernelImage} $out/bzImage
          '') { };
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
          '' + (if f.text != null then ''
            printf '%s' ${escapeShellArg f.text} > "$out/etc/${name}"
          '' else if f.source != null then ''
            $bb ln -s ${f.source} "$out/etc/${name}"
          '' else ''
            echo "environment.etc.${name}: neither text nor source is set" >&2; exit 1
          '')) config.environment.etc)}
          printf '%s' ${escapeShellArg config.networking.firewall.extraCommands} > $out/etc/lab-firewall
          $bb mkdir -p $out/sw/bin
          for p in ${lib.concatMapStringsSep " " (p: escapeShellArg "${p}") config.environment.systemPackages}; do
            for f in "$p"/bin/*; do
              if [ -e "$f" ]; then $bb ln -sf "$f" $out/sw/bin/; fi
            done
          done
        '' {
          kernelParams = b.concatStringsSep " " config.boot.kernelParams;
          switchScript = import ./switch-to-configuration.nix { inherit (config.lab) failActivation dropDeployer hangActivation; };
        };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [ baseModule ] ++ modules;
    specialArgs = { inherit bbDrv pkgs; } // specialArgs;
  };
in
evaluated // { inherit bbDrv; }
