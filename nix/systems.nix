# How carrier evaluates a machine's system, shared by both modes (legacy:
# build-machines.nix; flake: mk-confctl-outputs.nix). Spec 1.3.
#
#   (import ./systems.nix { confDir; inventory; coreLib; corePkgs; }).build {
#     m = { name; clusterName; spin; buildAttribute; extraModules; ... };
#     args = confMachine: { swpins; swpinsInfo; inputs; inputsInfo; configurationInfo; flakeInputs; };
#     eval = { nixos = modules: specialArgs: <evaluated system>; vpsadminos = ...; };
#   }
# returns the derivation of the machine's build attribute.
#
# Modules, in confctl's order: a module declaring `cluster` (the inventory's
# values, read-only data), `cluster/<clusterName>/config.nix`, carrier's confctl
# modules for the spin (modules/module-list.nix: settings, source records, host
# name, and on NixOS the carrier module), the configuration's
# `modules/module-list.nix` (`{ nixos = [...]; vpsadminos = [...]; }`) when it
# exists, then the machine's extraModules.
# Special arguments: confMachine (the unmodified source cluster.<clusterName>
# plus name), confDir, confLib, confData (`data/default.nix` called with
# { lib }, read lazily), the mode's `args` and carrierMachine (the entry `m`).
{ confDir, inventory, coreLib, corePkgs }:
let
  b = builtins;

  fail = m: msg: throw "carrier: machine '${m.name}': ${msg}";

  confLib = import ./conf-lib.nix { inherit confDir coreLib corePkgs; };

  dataFile = "${confDir}/data/default.nix";
  confData =
    if b.pathExists dataFile then import dataFile { lib = coreLib; }
    else throw "carrier: confData was read, but ${dataFile} does not exist";

  userModuleListFile = "${confDir}/modules/module-list.nix";
  userModuleList = if b.pathExists userModuleListFile then import userModuleListFile else { };
  systemModuleList = import ./modules/module-list.nix;

  # config.cluster in every system: the inventory (plain data), as confctl's
  # systems see their cluster.
  clusterModule = { lib, ... }: {
    options.cluster = lib.mkOption {
      type = lib.types.attrs;
      default = inventory.machines;
      description = "The cluster's machines (cluster.<name>), as carrier's inventory evaluated them.";
    };
  };
in
{
  inherit confLib;

  build = { m, args, eval }:
    let
      configFile = "${confDir}/cluster/${m.clusterName}/config.nix";
      modules = [ clusterModule configFile ]
        ++ (systemModuleList.${m.spin} or [ ])
        ++ (userModuleList.${m.spin} or [ ])
        ++ (m.extraModules or [ ]);
      confMachine = (inventory.machines.${m.clusterName}
        or (fail m "cluster.${m.clusterName} does not exist")) // { name = m.clusterName; };
      specialArgs = {
        inherit confMachine confLib confData confDir;
        carrierMachine = m;
      } // args confMachine;
      system =
        if !(b.pathExists configFile) then fail m "${configFile} does not exist"
        else if eval ? ${m.spin} then eval.${m.spin} modules specialArgs
        else fail m "spin '${m.spin}' cannot be built (only nixos and vpsadminos)";
      attrName = b.concatStringsSep "." m.buildAttribute;
      value = b.foldl' (acc: a:
        if b.isAttrs acc && acc ? ${a} then acc.${a}
        else fail m "the build attribute '${attrName}' does not exist in ${configFile}")
        system.config m.buildAttribute;
    in
    if b.isAttrs value && (value.type or null) == "derivation" then value
    else fail m "the build attribute '${attrName}' is not a derivation";
}
