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
# with confctl's module list and special arguments (systems.nix). carrier has
# no software pins: swpins maps the machine's nix.nixPath names to their paths,
# swpinsInfo is { }, and the flake-only ones are empty (inputs, flakeInputs) or
# null (inputsInfo, configurationInfo).
{ confDir, machinesJson, moduleFilesJson ? "[]" }:
let
  b = builtins;
  confDirStr = toString confDir;
  machines = b.fromJSON machinesJson;

  # The source machines' metadata, evaluated only when a system reads confMachine.
  inventory = import ./eval-cluster.nix { confDir = confDirStr; inherit moduleFilesJson; };

  autoRollback = b.toFile "auto-rollback" (b.readFile ./auto-rollback.sh);

  # nixpkgs' lib when this build group has nixpkgs, else carrier's own.
  nixpkgsLib = b.tryEval (b.findFile b.nixPath "nixpkgs/lib");
  coreLib =
    if nixpkgsLib.success && b.pathExists (nixpkgsLib.value + "/default.nix") then import nixpkgsLib.value
    else import ./lib/modules.nix;
  systems = import ./systems.nix { confDir = confDirStr; inherit inventory coreLib; corePkgs = import <nixpkgs> { }; };

  nixPathOf = entries: b.listToAttrs (b.concatMap (e:
    let i = b.match "([^=]+)=(.*)" e; in
    if i == null then [ ] else [ { name = b.elemAt i 0; value = b.elemAt i 1; } ]) entries);

  buildOne = m: systems.build {
    inherit m;
    args = confMachine: {
      swpins = nixPathOf confMachine.nix.nixPath;
      swpinsInfo = { };
      inputs = { };
      inputsInfo = null;
      configurationInfo = null;
      flakeInputs = { };
    };
    eval = {
      nixos = modules: specialArgs: import <nixpkgs/nixos/lib/eval-config.nix> { inherit modules specialArgs; };
      vpsadminos = modules: specialArgs:
        import <vpsadminos/os/default.nix> { configuration = { }; extraModules = modules; inherit specialArgs; };
    };
  };
in
b.listToAttrs (map (m: {
  name = m.key;
  value = { inherit (m) name; toplevel = buildOne m; inherit autoRollback; };
}) machines)
