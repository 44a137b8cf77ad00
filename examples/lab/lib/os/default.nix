# Stand-in for vpsAdminOS' os/default.nix (the lab has no vpsAdminOS; see
# ../../README.md). Accepts the real one's arguments:
#
#   import <vpsadminos/os/default.nix> { configuration = ...; extraModules = [ ... ]; specialArgs = { ... }; }
#
# and returns { config, options, ... } plus `dist`/`toplevel` shortcuts.
# Like the real one, it produces `system.build.dist`: bzImage, initrd,
# root.squashfs and kernel-params, extended by `system.distBuilderCommands`
# (shell lines run at the end of the dist build with $out set).
# `lib` and `system` as in ../nixos/lib/eval-config.nix.
{ configuration ? { }, extraModules ? [ ], modules ? [ ], specialArgs ? { }, ... }@args:
let
  evaluated = import ../system.nix ({
    spin = "vpsadminos";
    modules = [ distModule configuration ] ++ extraModules ++ modules;
    inherit specialArgs;
  } // builtins.intersectAttrs { lib = null; system = null; } args);

  distModule = { config, lib, bbDrv, ... }: {
    options.system.distBuilderCommands = lib.mkOption {
      type = lib.types.lines;
      default = "";
      description = "Shell commands appended to the dist build ($out is the dist).";
    };
    config.system.build.dist = let
      inherit (config.system.build) toplevel kernel initrd;
    in bbDrv "vpsadminos-dist-${config.networking.hostName}" ''
      bb=/bin/busybox
      $bb mkdir -p $out
      $bb ln -s ${kernel}/bzImage $out/bzImage
      $bb ln -s ${initrd}/initrd $out/initrd
      echo "lab root filesystem of ${toplevel}" > $out/root.squashfs
      printf '%s\n' "init=${toplevel}/init $kernelParams" > $out/kernel-params
      ${config.system.distBuilderCommands}
    '' { kernelParams = builtins.concatStringsSep " " config.boot.kernelParams; };
  };
in
evaluated // {
  inherit (evaluated) config;
  toplevel = evaluated.config.system.build.toplevel;
  dist = evaluated.config.system.build.dist;
}
