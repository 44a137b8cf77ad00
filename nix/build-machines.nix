# Evaluates and builds machines' systems: the build attribute of each machine
# (spec 2.1, 2.4), plus the auto-rollback script (spec 2.3).
#
# Invocation (one nix-build per group of machines with identical nix.nixPath;
# each entry of it becomes `-I name=path`, and `-I carrier=<this directory>`
# lets nixpkgs-free systems find carrier's module system):
#
#   nix-build --no-out-link nix/build-machines.nix \
#     --argstr confDir /abs/conf \
#     --argstr moduleFilesJson '["/abs/conf/cluster/a/module.nix", ...]' \
#     --argstr machinesJson '[{"key":"m_a_1234abcd","name":"a","clusterName":"a",
#                              "spin":"nixos","buildAttribute":["system","build","toplevel"],
#                              "extraModules":[]}]' \
#     -A m_a_1234abcd.toplevel
#
#   nix-instantiate --eval --read-write-mode --json ... -A m_a_1234abcd.autoRollback
#
# Result: { <key> = { name; toplevel = <derivation of the build attribute>;
#                     autoRollback = <store path of the script>; }; }
# Keys are the machines' flake keys (m_<sanitized>_<8 hex>), safe in -A paths,
# where machine names (`carrier#alias`, `prg/node1`) are not.
#
# A machine's system is evaluated by its spin's entry point as confctl does:
#   nixos:      import <nixpkgs/nixos/lib/eval-config.nix> { modules; specialArgs; }
#   vpsadminos: import <vpsadminos/os/default.nix> { configuration = { }; extraModules = modules; specialArgs; }
# Modules, in confctl's order (spec 1.3): a module declaring `cluster` (the
# inventory's values, read-only data), `cluster/<clusterName>/config.nix`,
# carrier's confctl modules for the spin (nix/modules/module-list.nix: settings,
# source records, host name, and on NixOS the carrier module), the
# configuration's `modules/module-list.nix` (`{ nixos = [...]; vpsadminos = [...]; }`)
# when it exists, then the machine's extraModules.
# Special arguments: those confctl gives (confMachine, the unmodified source
# cluster.<clusterName> plus name; confDir; confLib; confData, the value of
# `data/default.nix` called with { lib }; swpins and swpinsInfo; inputs,
# inputsInfo, configurationInfo and flakeInputs) and carrierMachine (this entry).
# carrier has no software pins: swpins maps the machine's nix.nixPath names to
# their paths, swpinsInfo is { }, and the flake-only ones are empty (inputs,
# flakeInputs) or null (inputsInfo, configurationInfo).
{ confDir, machinesJson, moduleFilesJson ? "[]" }:
let
  b = builtins;
  confDirStr = toString confDir;
  machines = b.fromJSON machinesJson;

  # The source machines' metadata, evaluated only when a system reads confMachine.
  inventory = import ./eval-cluster.nix { confDir = confDirStr; inherit moduleFilesJson; };

  autoRollback = b.toFile "auto-rollback" (b.readFile ./auto-rollback.sh);

  fail = m: msg: throw "carrier: machine '${m.name}': ${msg}";

  # nixpkgs' lib when this build group has nixpkgs, else carrier's own.
  nixpkgsLib = b.tryEval (b.findFile b.nixPath "nixpkgs/lib");
  coreLib =
    if nixpkgsLib.success && b.pathExists (nixpkgsLib.value + "/default.nix") then import nixpkgsLib.value
    else import ./lib/modules.nix;
  confLib = import ./conf-lib.nix { confDir = confDirStr; inherit coreLib; corePkgs = import <nixpkgs> { }; };

  dataFile = "${confDirStr}/data/default.nix";
  confData =
    if b.pathExists dataFile then import dataFile { lib = coreLib; }
    else throw "carrier: confData was read, but ${dataFile} does not exist";

  userModuleListFile = "${confDirStr}/modules/module-list.nix";
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

  nixPathOf = entries: b.listToAttrs (b.concatMap (e:
    let i = b.match "([^=]+)=(.*)" e; in
    if i == null then [ ] else [ { name = b.elemAt i 0; value = b.elemAt i 1; } ]) entries);

  buildOne = m:
    let
      configFile = "${confDirStr}/cluster/${m.clusterName}/config.nix";
      modules = [ clusterModule configFile ]
        ++ (systemModuleList.${m.spin} or [ ])
        ++ (userModuleList.${m.spin} or [ ])
        ++ (m.extraModules or [ ]);
      confMachine = (inventory.machines.${m.clusterName}
        or (fail m "cluster.${m.clusterName} does not exist")) // { name = m.clusterName; };
      specialArgs = {
        inherit confMachine confLib confData;
        confDir = confDirStr;
        carrierMachine = m;
        swpins = nixPathOf confMachine.nix.nixPath;
        swpinsInfo = { };
        inputs = { };
        inputsInfo = null;
        configurationInfo = null;
        flakeInputs = { };
      };
      system =
        if !(b.pathExists configFile) then fail m "${configFile} does not exist"
        else if m.spin == "nixos" then
          import <nixpkgs/nixos/lib/eval-config.nix> { inherit modules specialArgs; }
        else if m.spin == "vpsadminos" then
          import <vpsadminos/os/default.nix> { configuration = { }; extraModules = modules; inherit specialArgs; }
        else fail m "spin '${m.spin}' cannot be built (only nixos and vpsadminos)";
      attrName = b.concatStringsSep "." m.buildAttribute;
      value = b.foldl' (acc: a:
        if b.isAttrs acc && acc ? ${a} then acc.${a}
        else fail m "the build attribute '${attrName}' does not exist in ${configFile}")
        system.config m.buildAttribute;
    in
    if b.isAttrs value && (value.type or null) == "derivation" then value
    else fail m "the build attribute '${attrName}' is not a derivation";
in
b.listToAttrs (map (m: {
  name = m.key;
  value = { inherit (m) name; toplevel = buildOne m; inherit autoRollback; };
}) machines)
