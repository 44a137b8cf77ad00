# `confLib`, the special argument confctl gives every system module: confctl's
# nix/lib functions, re-implemented (same names, same results) over the
# inventory carrier evaluated.
#
#   import ./conf-lib.nix { confDir; coreLib; corePkgs; }
#
# coreLib is nixpkgs' lib when <nixpkgs/lib> exists, else carrier's module
# system (nix/lib/modules.nix); corePkgs is `import <nixpkgs> { }`, evaluated
# only when read.
{ confDir, coreLib, corePkgs }:
let
  b = builtins;
  lib = coreLib;

  findMetaConfig = { cluster, name }: cluster.${name};

  # A machine record as confctl's getClusterMachines returns it (spec 1.3).
  makeMachine = { name, metaConfig, carrier ? null, alias ? null, clusterName ? name, extraModules ? [ ], buildAttribute ? metaConfig.buildAttribute }: {
    inherit name alias metaConfig carrier extraModules clusterName;
    build.attribute = buildAttribute;
  };

  override = old: new: if new == null then old else new;
  generations = old: cm: b.mapAttrs (k: v: override v (cm.${k} or null)) old;

  expandCarrier = cluster: carrierName: m:
    map (cm:
      let source = cluster.${cm.machine}; in
      makeMachine {
        name = "${carrierName}#${if cm.alias == null then cm.machine else cm.alias}";
        inherit (cm) alias extraModules buildAttribute;
        clusterName = cm.machine;
        carrier = carrierName;
        metaConfig = source // {
          labels = source.labels // cm.labels;
          tags = source.tags ++ cm.tags;
          buildGenerations = generations source.buildGenerations cm.buildGenerations;
          hostGenerations = generations source.hostGenerations cm.hostGenerations;
        };
      }) m.carrier.machines;
in
rec {
  inherit corePkgs coreLib findMetaConfig;

  mkNetUdevRule = name: mac: ''
    ACTION=="add", SUBSYSTEM=="net", DRIVERS=="?*", KERNEL=="eth*", ATTR{address}=="${mac}", NAME="${name}"
  '';

  mkNetUdevRules = rs: b.concatStringsSep "\n" (lib.mapAttrsToList mkNetUdevRule rs);

  # Every machine, carried copies after their carrier (attribute-name order).
  getClusterMachines = cluster:
    b.concatMap (name:
      let m = cluster.${name}; self = makeMachine { inherit name; metaConfig = m; }; in
      if m.carrier.enable then [ self ] ++ expandCarrier cluster name m else [ self ])
      (b.attrNames cluster);

  getAllAddressesOf = cluster: v:
    b.concatMap (machine: map (addr: machine // addr) machine.metaConfig.addresses."v${toString v}")
      (getClusterMachines cluster);

  mkOptions.addresses = v: { config, ... }: {
    options = {
      address = lib.mkOption { type = lib.types.str; description = "IPv${toString v} address"; };
      prefix = lib.mkOption { type = lib.types.ints.positive; description = "Prefix length"; };
      string = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        apply = s: if s == null then "${config.address}/${toString config.prefix}" else s;
        description = "Address with prefix as string";
      };
    };
  };
}
