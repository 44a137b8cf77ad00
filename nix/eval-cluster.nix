# Evaluates the `cluster` inventory of a configuration directory to plain JSON.
#
# Invocation (NIX_CONF_DIR pointing at carrier's nix.conf; no nixpkgs, no
# store writes, no builds):
#
#   nix-instantiate --eval --strict --json nix/eval-cluster.nix \
#     --argstr confDir /abs/conf \
#     --argstr moduleFilesJson '["/abs/conf/cluster/a/module.nix","/abs/conf/cluster/b/c/module.nix"]'
#
#   The module list may instead be given as a Nix list or as a file holding one:
#     --arg moduleFiles '[ "/abs/conf/cluster/a/module.nix" "/abs/conf/cluster/b/c/module.nix" ]'
#     --argstr moduleFiles /abs/tmp/module-files.nix
#   (moduleFilesJson wins over moduleFiles; with --argstr only, paths never
#   become Nix syntax.)
#
# `confDir` must be an absolute path. The module files (default: none) are
# absolute path strings, normally every cluster/**/module.nix of confDir
# sorted by byte order (the order of list concatenation and of files in
# messages follows it).
#
# Modules evaluated, in this order:
#   1. nix/cluster/options.nix (the option declarations);
#   2. <confDir>/cluster/module-list.nix when it exists (a list of paths, as
#      upstream confctl generates it; the given module files are then
#      ignored), otherwise the given module files;
#   3. <confDir>/modules/cluster/default.nix when it exists.
# Module functions may take `config`, `lib`, `options` and `confDir` (the
# configuration directory as a string).
#
# The module system is always carrier's own (nix/lib/modules.nix), never
# nixpkgs' lib, even when NIX_PATH provides <nixpkgs>: the result must not
# depend on the caller's environment, and it keeps evaluation fast.
#
# Result (exit status 0, one JSON object on stdout):
#   {
#     machines = { "<name>" = { <every option of cluster.<name>, fully merged>; }; ... };
#     files    = { "<name>" = [ "<files whose definitions of cluster.<name> count>" ]; ... };
#   }
# Values are plain JSON data: path values become strings (toString, never
# copied to the store); a function anywhere in a value is an error.
#
# On an error: exit status 1, nothing on stdout, "error: <message>" on stderr.
# carrier's messages start with "carrier: " (see nix/lib/modules.nix); Nix'
# own ones (e.g. "syntax error, unexpected ...") do not.
#
# `--arg shortcuts false` evaluates everything the general way, here and in the
# module system (see nix/lib/module-system.nix): the same result, slower. Only
# the test that compares both uses it.
{ confDir, moduleFiles ? [ ], moduleFilesJson ? null, shortcuts ? true }:
let
  lib = import ./lib/module-system.nix { inherit shortcuts; };
  b = builtins;

  confDirStr = toString confDir;
  moduleListFile = confDirStr + "/cluster/module-list.nix";
  clusterDefaultFile = confDirStr + "/modules/cluster/default.nix";

  userModules =
    if b.pathExists moduleListFile then import moduleListFile
    else if moduleFilesJson != null then b.fromJSON moduleFilesJson
    else if b.isList moduleFiles then map toString moduleFiles
    else import moduleFiles;

  extraModules = lib.optional (b.pathExists clusterDefaultFile) clusterDefaultFile;

  evaluated = lib.evalModules {
    modules = [ ./cluster/options.nix ] ++ userModules ++ extraModules;
    specialArgs = { confDir = confDirStr; };
  };

  cluster = evaluated.config.cluster;

  # Plain JSON data: paths -> strings (toString, never copied to the store),
  # functions rejected. A read-only scan first, so that the (usual) machines
  # without paths or functions are not copied. When every option comes from
  # nix/cluster/options.nix, only the free-form values (labels) and the carried
  # entries (labels, extraModules) can hold such values, so only those are
  # scanned; any other option declaration (modules/cluster/default.nix, a
  # module file declaring options) makes every value be scanned.
  optionsFile = toString ./cluster/options.nix;
  onlyOwnOptions = shortcuts && b.all (m: m.options == { } || m.file == optionsFile) evaluated.modules;
  needsFix = v:
    let t = b.typeOf v; in
    if t == "set" then (let vs = b.attrValues v; in !(b.all b.isString vs) && b.any needsFix vs)
    else if t == "list" then !(b.all b.isString v) && b.any needsFix v
    else t == "path" || t == "lambda";
  machineNeedsFix = m:
    if !shortcuts then true
    else if onlyOwnOptions then needsFix m.labels || (m.carrier.machines != [ ] && needsFix m.carrier.machines)
    else needsFix m;
  machineData = name: m:
    let
      go = v:
        let t = b.typeOf v; in
        if t == "set" then b.mapAttrs (_: go) v
        else if t == "list" then (if b.all b.isString v then v else map go v)
        else if t == "path" then toString v
        else if t == "lambda" then throw "carrier: a value of 'cluster.${lib.showOption [ name ]}' is a function, which cannot be represented as JSON"
        else v;
    in
    if machineNeedsFix m then go m else m;

  # Files per machine: the files of the definitions of cluster.<name> that
  # survive their mkIf conditions.
  definitions = evaluated.options.cluster.definitionsWithLocations;
  survives = file: v: (shortcuts && !(b.isAttrs v && v ? _type)) || lib.dischargeDef null null file v != [ ];
  # The usual case: every definition defines one machine (e.g. one module per
  # machine); "" collects the other ones.
  bySingleName = b.groupBy (d:
    if b.isAttrs d.value then (let ns = b.attrNames d.value; in if ns != [ ] && b.tail ns == [ ] then b.head ns else "")
    else "") definitions;
  byName = b.groupBy (d: d.name) (b.concatMap (d:
    if b.isAttrs d.value
    then map (name: { inherit name; inherit (d) file; value = d.value.${name}; }) (b.attrNames d.value)
    else [ ]) definitions);
  filesOf =
    if shortcuts && !(bySingleName ? "") then
      (name: _:
        let ds = bySingleName.${name}; in
        if b.tail ds == [ ] then (let d = b.head ds; in if survives d.file d.value.${name} then [ d.file ] else [ ])
        else lib.uniqueStrings (map (d: d.file) (b.filter (d: survives d.file d.value.${name}) ds)))
    else
      (name: _:
        let ds = byName.${name} or [ ]; in
        if shortcuts && ds != [ ] && b.tail ds == [ ] then (let d = b.head ds; in if survives d.file d.value then [ d.file ] else [ ])
        else lib.uniqueStrings (map (d: d.file) (b.filter (d: survives d.file d.value) ds)));

  result = {
    machines = b.mapAttrs machineData cluster;
    files = b.mapAttrs filesOf cluster;
  };
in
# Fully evaluated before anything is printed: on an error stdout stays empty
# (nix-instantiate would otherwise print the JSON up to the failing value).
b.deepSeq result result
