# carrier's `lib.mkConfctlOutputs` (nix/flake.nix): the flake-mode contract of
# spec Appendix A, compatible with confctl's, so a configuration's flake.nix
# switches to carrier by changing its `confctl` input:
#
#   outputs = inputs: {
#     confctl = inputs.confctl.lib.mkConfctlOutputs { confDir = ./.; inherit inputs; channels = { ... }; };
#   };
#
# Result: { settings; channels; machineNames; machineKeys; machines; machinesJson;
#           buildPlan; inputs; inputsInfo; build.<key>.{toplevel,autoRollback};
#           toplevel; lib.mkMachineKey; }
#
# The cluster is evaluated by carrier's inventory evaluator (eval-cluster.nix,
# every cluster/**/module.nix or cluster/module-list.nix) and expanded as in
# legacy mode (conf-lib.nix), plus flake mode's `metaConfig.buildAttribute`
# of carried machines (spec 1.3). Systems are evaluated by systems.nix through
# the inputs the machine's `inputs.channels`/`inputs.overrides` select:
# `<nixpkgs input>.lib.nixosSystem`, `<vpsadminos input>.lib.vpsadminosSystem`.
# Special arguments as in legacy mode, with the machine's `inputs` (role ->
# store path), `inputsInfo`, `configurationInfo` and `flakeInputs`; `swpins`
# and `swpinsInfo` are { }.
{ confDir, inputs, channels ? { }, system ? null }:
let
  b = builtins;
  resolvedSystem = if system != null then system else b.currentSystem or "x86_64-linux";
  confDirStr = toString confDir;

  coreNixpkgs = inputs.nixpkgs;
  corePkgs = coreNixpkgs.legacyPackages.${resolvedSystem};
  coreLib = coreNixpkgs.lib;
  carrierLib = import ./lib/modules.nix;

  flakeInputs = removeAttrs inputs [ "self" ];

  source = inputs.self or null;
  revision =
    if source == null then null
    else if source ? rev then source.rev
    else if source ? dirtyRev then carrierLib.removeSuffix "-dirty" source.dirtyRev
    else null;
  configurationInfo =
    if revision != null && b.match "[0-9a-f]{40}" revision != null then {
      schemaVersion = 1;
      inherit revision;
      revisionDirty = !(source ? rev) && source ? dirtyRev;
    } else null;

  # Every cluster/**/module.nix in byte order (what carrier's inventory finds).
  moduleFiles = dir:
    let entries = b.readDir dir; in
    b.concatMap (n:
      if entries.${n} == "directory" then moduleFiles "${dir}/${n}"
      else if n == "module.nix" && entries.${n} == "regular" then [ "${dir}/${n}" ]
      else [ ]) (b.attrNames entries);
  inventory = import ./eval-cluster.nix {
    confDir = confDirStr;
    moduleFilesJson = b.toJSON (b.sort b.lessThan (moduleFiles "${confDirStr}/cluster"));
  };

  systems = import ./systems.nix { confDir = confDirStr; inherit inventory coreLib corePkgs; };

  mkMachineKey = name:
    let
      safe = b.concatStringsSep "" (map (c: if b.match "[A-Za-z0-9_]" c != null then c else "_")
        (carrierLib.stringToCharacters name));
      sanitized = if b.match "[0-9].*" safe != null then "_" + safe else safe;
    in
    "m_" + sanitized + "_" + b.substring 0 8 (b.hashString "sha256" name);

  machines = map (m: {
    inherit (m) name alias clusterName carrier extraModules;
    key = mkMachineKey m.name;
    flakeKey = mkMachineKey m.name;
    metaConfig = m.metaConfig // { buildAttribute = m.build.attribute; };
  }) (systems.confLib.getClusterMachines inventory.machines);

  byName = f: b.listToAttrs (map (m: { inherit (m) name; value = f m; }) machines);
  byKey = f: b.listToAttrs (map (m: { name = m.key; value = f m; }) machines);

  lockFile = confDirStr + "/flake.lock";
  lock = if b.pathExists lockFile then b.fromJSON (b.readFile lockFile) else { nodes = { }; };
  urlOf = node:
    let original = node.original or { }; in
    if (original.type or null) == "github" then "https://github.com/${original.owner}/${original.repo}"
    else if original ? url then carrierLib.removePrefix "git+" original.url
    else null;
  roleInfo = input:
    let node = lock.nodes.${input} or { }; rev = (node.locked or { }).rev or null; in
    {
      inherit input rev;
      url = urlOf node;
      shortRev = if rev == null then null else b.substring 0 8 rev;
      lastModified = (node.locked or { }).lastModified or null;
    };

  buildPlan = byName (m:
    let
      roles = b.foldl' (acc: c: acc // (channels.${c} or { })) { } m.metaConfig.inputs.channels
        // m.metaConfig.inputs.overrides;
    in
    {
      inherit (m) key flakeKey;
      inputs = b.mapAttrs (role: input: inputs.${input}.outPath) roles;
      inputsInfo = b.mapAttrs (role: roleInfo) roles;
    });

  roleInput = m: role:
    let info = buildPlan.${m.name}.inputsInfo; in
    if info ? ${role} then inputs.${info.${role}.input}
    else throw "carrier: machine '${m.name}': no input for the role '${role}' (inputs.channels or inputs.overrides of cluster.${m.clusterName})";

  buildOne = m: systems.build {
    m = m // { inherit (m.metaConfig) spin buildAttribute; };
    args = _: {
      swpins = { };
      swpinsInfo = { };
      inherit (buildPlan.${m.name}) inputs inputsInfo;
      inherit configurationInfo flakeInputs;
    };
    eval = {
      nixos = modules: specialArgs:
        (roleInput m "nixpkgs").lib.nixosSystem { inherit modules specialArgs; system = resolvedSystem; };
      vpsadminos = modules: specialArgs:
        ((roleInput m "vpsadminos").lib.vpsadminosSystem {
          pkgs = (roleInput m "nixpkgs").legacyPackages.${resolvedSystem};
          inherit modules specialArgs;
          system = resolvedSystem;
        }).eval;
    };
  };

  settingsFile = confDirStr + "/configs/confctl.nix";
  settings = (carrierLib.evalModules {
    modules = [ ./modules/confctl/settings.nix ] ++ carrierLib.optional (b.pathExists settingsFile) settingsFile;
  }).config.confctl;

  build = byKey (m: {
    toplevel = buildOne m;
    autoRollback = corePkgs.writeScript "auto-rollback" (b.readFile ./auto-rollback.sh);
  });
in
{
  inherit settings channels buildPlan build;
  machineNames = map (m: m.name) machines;
  machineKeys = byName (m: m.key);
  machines = byName (m: m);
  machinesJson = corePkgs.writeText "machine-list.json" (b.toJSON (byName (m: m)));
  inputs = byKey (m: buildPlan.${m.name}.inputs);
  inputsInfo = byKey (m: buildPlan.${m.name}.inputsInfo);
  toplevel = b.mapAttrs (_: v: v.toplevel) build;
  lib = { inherit mkMachineKey; };
}
