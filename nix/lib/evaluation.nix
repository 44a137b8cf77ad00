# Part of carrier's module system (see modules.nix, assembled by
# module-system.nix): modules (paths, sets, functions) normalized and
# collected with their imports, and evalModules.
self:
let
  inherit (builtins)
    attrNames isAttrs isFunction isString isPath concatMap length head elem elemAt
    genList listToAttrs concatStringsSep typeOf all any removeAttrs functionArgs
    intersectAttrs substring genericClosure;
  inherit (self)
    configOf evalLevelG genAttrs groupDefs id nameValuePair lib shortcuts;

  isPathLike = m: isPath m || (isString m && substring 0 1 m == "/");

  applyModule = file: args: f:
    let
      fa = functionArgs f;
      given = intersectAttrs fa args;
    in
    if fa == { } then f args
    else if intersectAttrs args fa == fa then f given
    else
      f (given // listToAttrs (concatMap (n:
        if fa.${n} || args ? ${n} then [ ]
        else [ (nameValuePair n (throw "carrier: the module '${file}' takes the argument '${n}', which is not available (available: ${concatStringsSep ", " (attrNames args)})")) ]
      ) (attrNames fa)));

  moduleKeys = [ "_file" "key" "imports" "options" "config" "meta" "disabledModules" "_class" "freeformType" "_pureDefaults" ];
  moduleKeySet = genAttrs moduleKeys (_: true);
  # the configuration of a shorthand module (everything but its module keys)
  shorthandConfig = m: if intersectAttrs moduleKeySet m == { } then m else removeAttrs m moduleKeys;

  # An attribute-set module (already applied) in a submodule's fast path ->
  # normalized record (key and fromPath are not needed there).
  normalizeApplied = file: normalizeValue file file false;

  notModuleMsg = file: m:
    "carrier: the module in '${file}' is not a module (expected an attribute set or a function, got a value of type ${typeOf m})";
  unsupportedAttrMsg = file: extra:
    "carrier: the module in '${file}' has an unsupported attribute '${head extra}'. This is caused by introducing a top-level 'config' or 'options' attribute. Add configuration attributes immediately on the top level instead, or move all of them (namely: ${concatStringsSep ", " extra}) into the explicit 'config' attribute.";

  # A module value (function already or not yet applied) -> normalized record.
  # A function is called directly when every argument it takes is available.
  normalizeModule = args: file: key: fromPath: m0:
    let fa = functionArgs m0; in
    normalizeValue file key fromPath (
      if !(isFunction m0) then m0
      else if fa != { } && intersectAttrs args fa == fa then m0 (intersectAttrs fa args)
      else applyModule file args m0);

  # A module value (function applied) -> normalized record.
  normalizeValue = file: key: fromPath: m:
    if !(isAttrs m) then throw (notModuleMsg file m)
    else if m ? _type then { inherit key file fromPath; imports = [ ]; options = { }; config = m; }
    else
      let
        file' = if m ? _file then toString m._file else file;
        key' = if m ? key then toString m.key else key;
        fromPath' = fromPath || m ? key;
      in
      if m ? config || m ? options then
        let extra = attrNames (removeAttrs m moduleKeys); in
        if extra != [ ] then throw (unsupportedAttrMsg file' extra)
        else { key = key'; file = file'; fromPath = fromPath'; imports = m.imports or [ ]; options = m.options or { }; config = m.config or { }; }
      else
        { key = key'; file = file'; fromPath = fromPath'; imports = m.imports or [ ]; options = { }; config = shorthandConfig m; };

  # A path module -> normalized record.
  pathModule = args: p: let f = toString p; in normalizeModule args f f true (import p);

  # entries: [ { file, module, configOnly } ]
  #   -> [ { key, file, imports, options, config, fromPath } ] in depth-first
  #      pre-order, each path module once.
  collectModules = args: entries:
    let
      normalize = normalizeModule args;

      load = parentKey: idx: e:
        if e.configOnly && isAttrs e.module then
          { key = "${parentKey}:${toString idx}"; inherit (e) file; fromPath = false; imports = [ ]; options = { }; config = e.module; }
        else if isPathLike e.module then pathModule args e.module
        else normalize e.file "${parentKey}:${toString idx}" false e.module;

      walk = ancestors: mod:
        if mod.imports == [ ] then [ mod ]
        else
          let ancestors' = ancestors ++ [ mod.key ]; in
          [ mod ] ++ concatMap (i:
            let m = elemAt mod.imports i; in
            if isPathLike m && elem (toString m) ancestors' then [ ]
            else walk ancestors' (load mod.key i { inherit (mod) file; module = m; configOnly = false; })
          ) (genList id (length mod.imports));

      roots = genList (i:
        let e = elemAt entries i; m = e.module; in
        if !e.configOnly && (isPath m || (isString m && substring 0 1 m == "/")) then pathModule args m
        else load "" i e) (length entries);
      flat = if shortcuts && all (m: m.imports == [ ]) roots then roots else concatMap (walk [ ]) roots;
    in
    if any (m: m.fromPath) flat then genericClosure { startSet = flat; operator = _: [ ]; }
    else flat;

  evalModulesWith = { entries, specialArgs ? { }, prefix ? [ ], ctxFiles ? [ ] }:
    let
      args = { inherit lib config options; } // specialArgs;
      collected = collectModules args entries;
      decls = concatMap (m: if m.options == { } then [ ] else [ { inherit (m) file; value = m.options; } ]) collected;
      defs = concatMap (m: if m.config == { } then [ ] else [ { inherit (m) file; value = m.config; } ]) collected;
      ctx = { files = ctxFiles; inherit config; };
      # shared by config and options
      g = groupDefs prefix defs;
      config = configOf ctx prefix decls defs g;
      options = (evalLevelG ctx prefix decls g).options;
    in
    { inherit config options; modules = collected; };

  # Public entry point, nixpkgs-compatible arguments (modules, specialArgs, prefix).
  evalModules = { modules, specialArgs ? { }, prefix ? [ ], ... }:
    evalModulesWith {
      entries = map (m: { file = if isPathLike m then toString m else "<unknown-file>"; module = m; configOnly = false; }) modules;
      inherit specialArgs prefix;
    };

in
{
  inherit isPathLike applyModule moduleKeys moduleKeySet shorthandConfig normalizeApplied
    notModuleMsg unsupportedAttrMsg normalizeModule pathModule collectModules
    evalModulesWith evalModules;
}
