# carrier's own module system: a small re-implementation of the NixOS module
# system (nixpkgs lib/modules.nix + lib/types.nix) written with builtins only,
# so that the cluster inventory can be evaluated without nixpkgs.
#
#   lib = import ./modules.nix;
#   (lib.evalModules { modules = [ ... ]; specialArgs = { ... }; }).config
#
# Supported (with NixOS semantics):
#   * modules as paths (imported; the path string is the definition's file),
#     attribute sets and functions. A function module is called with the
#     arguments named in its pattern only (config, options, lib, name inside
#     attrsOf/listOf submodules, and specialArgs); `args: ...` gets them all.
#   * { imports, options, config } modules and the shorthand (everything but
#     `imports` is config), `_file` and `key`; imports are followed recursively
#     and de-duplicated by key (path modules: their path).
#   * mkIf / mkMerge / mkOverride (mkDefault 1000, mkForce 50, option default
#     1500) / mkOrder (mkBefore 500, mkAfter 1500), pushed down through sets of
#     options so the set of defined option paths never depends on a condition.
#   * types: bool int ints.* float number str nonEmptyStr strMatching lines
#     commas separatedString path package attrs anything unspecified raw enum nullOr
#     listOf nonEmptyListOf attrsOf lazyAttrsOf uniq either oneOf functionTo
#     submodule submoduleWith; type merging of repeated declarations
#     (submodules merge their module lists).
#   * every definition is type-checked; undeclared definitions, conflicting
#     definitions and used-but-undefined options are errors.
#
# Deliberate differences from nixpkgs:
#   * attrsOf decides which keys exist without evaluating mkIf conditions when a
#     key also has an unconditional definition. `config = mkIf cond { cluster.a.x
#     = ...; }` therefore works when `cond` reads `config.cluster.b` (nixpkgs
#     recurses infinitely there). A key whose definitions are all conditional
#     exists iff one condition holds (as in nixpkgs), so such a condition must
#     not read that attrsOf option (e.g. `config.cluster.b` for a key of
#     `cluster`): infinite recursion, as in nixpkgs.
#   * mkOverride on a whole attrsOf value (`cluster = mkForce { ... }`) is
#     honoured as in nixpkgs, but then the conditions at that level are
#     evaluated eagerly (nixpkgs semantics, including its recursion limits).
#   * nested overrides: the outermost mkOverride wins (nixpkgs fails).
#   * listOf type errors show the whole list and its type ('list of string').
#   * no `_module` option (no `_module.args`, no freeformType, no
#     disabledModules); configs never contain `_module`. The specialArgs of an
#     evaluation (e.g. confDir) are not passed into its submodules.
#   * submodule definitions that are plain attribute sets are config only
#     (nixpkgs' shorthandOnlyDefinesConfig, the default of types.submodule).
#
# Extensions (carrier's own):
#   * `mkOption { ... } // withConfig (config: { apply = ...; })`: option
#     attributes that need the configuration of the evaluation declaring the
#     option (e.g. the element of a submodule type); the same as declaring the
#     option with those attributes in a `{ config, ... }:` module. It lets an
#     attribute-set module hold such options (see below).
#   * `_pureDefaults = true` in an attribute-set module of a submodule type
#     promises that the defaults of its options read no configuration, so
#     they may be evaluated (and type-checked) together, once for all
#     elements, when one element first needs them (see planOf). Options with
#     `withConfig` attributes are never shared.
#
# Performance (a cluster of 1000 machines is evaluated in a fraction of a
# second). Every shortcut gives the results (values and errors) of the
# general path:
#   * the merged default of an option declaration is computed once and shared
#     by every evaluation that leaves the option undefined (defaultMemoOf);
#   * attribute-set modules of a submodule type are normalized once, and their
#     option trees planned once (planOf): evaluating an element visits only
#     the names it defines, takes the names nobody defines from the plan
#     (whole sub-trees at once for `_pureDefaults` modules), and checks the
#     common plain definitions of scalar options, of lists of scalars and of
#     submodules without the general merging (plannedLevelG);
#   * one declaring module, one definition, plain definitions, one mkIf or
#     mkOverride around a plain value, and submodule elements defined by one
#     plain attribute set (mergeOne) take direct routes; so do the common
#     shapes of submodule types (one attribute-set module, one function
#     module, or one of each declaring disjoint options) and attrsOf values
#     defined one name per module (e.g. one machine per file).
#
# All errors are thrown with messages starting with "carrier: ".
let
  b = builtins;
  inherit (b)
    attrNames attrValues isAttrs isList isFunction isString isInt isBool isFloat isPath
    mapAttrs concatMap filter foldl' length head tail elem elemAt genList listToAttrs
    concatStringsSep toJSON typeOf all any removeAttrs zipAttrsWith functionArgs
    intersectAttrs substring stringLength replaceStrings match sort genericClosure
    catAttrs hasAttr getAttr split concatLists groupBy;

  # ------------------------------------------------------------------ helpers
  id = x: x;
  const = x: _: x;
  flip = f: a: c: f c a;
  fix = f: let x = f x; in x;
  min = x: y: if x < y then x else y;
  max = x: y: if x > y then x else y;
  mod = base: int: base - (int * (b.div base int));
  isNull = x: x == null;
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  optionalAttrs = cond: as: if cond then as else { };
  optionalString = cond: s: if cond then s else "";
  toList = x: if isList x then x else [ x ];
  last = l: elemAt l (length l - 1);
  init = l: genList (elemAt l) (length l - 1);
  take = n: l: genList (elemAt l) (min n (length l));
  drop = n: l: genList (i: elemAt l (i + n)) (max 0 (length l - n));
  sublist = start: count: l:
    let len = length l; s = min start len; in
    genList (i: elemAt l (s + i)) (min count (len - s));
  flatten = x: if isList x then concatMap flatten x else [ x ];
  range = first: last: if first > last then [ ] else genList (n: first + n) (last - first + 1);
  imap0 = f: l: genList (n: f n (elemAt l n)) (length l);
  imap1 = f: l: genList (n: f (n + 1) (elemAt l n)) (length l);
  count = pred: foldl' (c: x: if pred x then c + 1 else c) 0;
  foldr = op: nul: list:
    let len = length list; go = n: if n == len then nul else op (elemAt list n) (go (n + 1));
    in go 0;
  foldl = foldl';
  reverseList = l: let n = length l; in genList (i: elemAt l (n - i - 1)) n;
  findFirst = pred: default: l: let r = filter pred l; in if r == [ ] then default else head r;
  # order-preserving; quadratic, for small lists (nixpkgs' `unique`)
  unique = foldl' (acc: e: if elem e acc then acc else acc ++ [ e ]) [ ];
  # order-preserving, linear, strings or ints only
  uniqueStrings = l: map (x: x.key) (genericClosure { startSet = map (key: { inherit key; }) l; operator = _: [ ]; });
  intersectLists = e: filter (x: elem x e);
  subtractLists = e: filter (x: !(elem x e));
  nameValuePair = name: value: { inherit name value; };
  genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
  mapAttrs' = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
  mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
  filterAttrs = pred: set:
    listToAttrs (concatMap (n: let v = set.${n}; in if pred n v then [ (nameValuePair n v) ] else [ ]) (attrNames set));
  zipAttrs = zipAttrsWith (_: vs: vs);
  attrByPath = attrPath: default: set:
    let go = p: s: if p == [ ] then s else if isAttrs s && s ? ${head p} then go (tail p) s.${head p} else default;
    in go attrPath set;
  hasAttrByPath = attrPath: set:
    let go = p: s: p == [ ] || (isAttrs s && s ? ${head p} && go (tail p) s.${head p});
    in go attrPath set;
  getAttrFromPath = attrPath: set:
    attrByPath attrPath (throw "carrier: cannot find attribute '${concatStringsSep "." attrPath}'") set;
  setAttrByPath = attrPath: value: foldr (n: v: { ${n} = v; }) value attrPath;
  recursiveUpdateUntil = pred: lhs: rhs:
    let f = attrPath: zipAttrsWith (n: values:
          let here = attrPath ++ [ n ]; in
          if tail values == [ ] || pred here (elemAt values 1) (head values)
          then head values else f here values);
    in f [ ] [ rhs lhs ];
  recursiveUpdate = recursiveUpdateUntil (_: lhs: rhs: !(isAttrs lhs && isAttrs rhs));
  hasPrefix = pref: str: substring 0 (stringLength pref) str == pref;
  hasSuffix = suf: str:
    let lc = stringLength str; ls = stringLength suf; in
    lc >= ls && substring (lc - ls) lc str == suf;
  removePrefix = pref: str:
    if hasPrefix pref str then substring (stringLength pref) (stringLength str) str else str;
  removeSuffix = suf: str:
    if hasSuffix suf str then substring 0 (stringLength str - stringLength suf) str else str;
  concatStrings = concatStringsSep "";
  concatMapStrings = f: l: concatStrings (map f l);
  concatMapStringsSep = sep: f: l: concatStringsSep sep (map f l);
  stringToCharacters = s: genList (p: substring p 1 s) (stringLength s);
  escapeRegex = replaceStrings (stringToCharacters "\\[{()^$?*+|.") (map (c: "\\" + c) (stringToCharacters "\\[{()^$?*+|."));
  splitString = sep: s: filter isString (split (escapeRegex sep) s);
  lowerChars = stringToCharacters "abcdefghijklmnopqrstuvwxyz";
  upperChars = stringToCharacters "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  toUpper = replaceStrings lowerChars upperChars;
  toLower = replaceStrings upperChars lowerChars;
  boolToString = x: if x then "true" else "false";
  mapNullable = f: a: if a == null then a else f a;
  assertMsg = pred: msg: pred || throw msg;
  throwIf = cond: msg: if cond then throw msg else x: x;
  throwIfNot = cond: msg: if cond then x: x else throw msg;
  warn = msg: b.trace "warning: ${msg}";
  literalExpression = text: { _type = "literalExpression"; inherit text; };
  literalMD = text: { _type = "literalMD"; inherit text; };
  mdDoc = x: x;

  joinAnd = l:
    if length l <= 1 then concatStrings l
    else concatStringsSep ", " (init l) + " and " + last l;
  showFiles = files: joinAnd (map (f: "'${f}'") files);

  showOptionPart = p:
    if match "[a-zA-Z_][a-zA-Z0-9_'-]*" p != null || match "\\[[0-9]+]" p != null then p
    else toJSON p;
  showOption = loc: concatStringsSep "." (map showOptionPart loc);

  # Readable rendering of a value for error messages (JSON for plain data).
  showValueAt = depth: v:
    let t = typeOf v; in
    if t == "string" || t == "int" || t == "bool" || t == "null" || t == "float" then toJSON v
    else if t == "path" then toJSON (toString v)
    else if t == "lambda" then "<function>"
    else if t == "list" then
      (if depth > 4 then "[...]" else "[" + concatMapStringsSep "," (showValueAt (depth + 1)) v + "]")
    else if t == "set" then
      (if v ? _type && isString v._type && propTypes ? ${v._type} then "<${v._type}>"
       else if depth > 4 then "{...}"
       else "{" + concatMapStringsSep "," (n: toJSON n + ":" + showValueAt (depth + 1) v.${n}) (attrNames v) + "}")
    else "<${t}>";
  showValue = showValueAt 0;

  # ---------------------------------------------------------------- properties
  propTypes = { "if" = true; merge = true; override = true; order = true; };
  isProp = v: isAttrs v && v ? _type && propTypes ? ${v._type};

  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  defaultOverridePriority = 100;
  mkOptionDefault = mkOverride 1500;
  mkDefault = mkOverride 1000;
  mkImageMediaOverride = mkOverride 60;
  mkForce = mkOverride 50;
  mkVMOverride = mkOverride 10;
  mkOrder = priority: content: { _type = "order"; inherit priority content; };
  defaultOrderPriority = 1000;
  mkBefore = mkOrder 500;
  mkAfter = mkOrder 1500;

  checkCondition = file: c:
    if isBool c then c
    else throw "carrier: mkIf called with a non-Boolean condition in '${file}': ${showValue c}";

  # A definition value -> list of { file, value, prio, order } with mkIf
  # evaluated and mkMerge flattened (nixpkgs' dischargeProperties, plus the
  # override/order wrappers; the outermost override wins).
  dischargeDef = prio: order: file: v:
    if isProp v then
      let t = v._type; in
      if t == "merge" then concatMap (dischargeDef prio order file) v.contents
      else if t == "if" then (if checkCondition file v.condition then dischargeDef prio order file v.content else [ ])
      else if t == "override" then dischargeDef (if prio == null then v.priority else prio) order file v.content
      else dischargeDef prio (if order == null then v.priority else order) file v.content
    else [ { inherit file prio order; value = v; } ];

  # True when the value is defined without depending on any mkIf condition.
  hasUnconditional = v:
    if isProp v then
      let t = v._type; in
      if t == "merge" then any hasUnconditional v.contents
      else if t == "if" then false
      else hasUnconditional v.content
    else true;

  # True when some definition survives its conditions.
  survives = file: v: dischargeDef null null file v != [ ];

  # True when an override/order wrapper sits at the top of a definition
  # (possibly inside mkIf/mkMerge).
  hasTopOverride = v:
    if isProp v then
      let t = v._type; in
      if t == "merge" then any hasTopOverride v.contents
      else if t == "if" then hasTopOverride v.content
      else true
    else false;

  # Push mkIf/mkMerge/mkOverride on an attribute set down into its values
  # (nixpkgs' pushDownProperties). Returns a list of { file, value } whose
  # values are attribute sets; a non-set value is handed to `onBad`.
  pushDownWith = onBad: file: v:
    if isAttrs v then
      if v ? _type then
        let t = v._type; in
        if t == "merge" then concatMap (pushDownWith onBad file) v.contents
        else if t == "if" then
          map (p: { inherit (p) file; value = mapAttrs (_: mkIf v.condition) p.value; })
            (pushDownWith onBad file v.content)
        else if t == "override" then
          map (p: { inherit (p) file; value = mapAttrs (_: mkOverride v.priority) p.value; })
            (pushDownWith onBad file v.content)
        else [ { inherit file; value = v; } ]
      else [ { inherit file; value = v; } ]
    else onBad file v;

  keepBad = file: v: [ { inherit file; value = v; } ];

  isPlainDef = d: let v = d.value; in !(isAttrs v && v ? _type && propTypes ? ${v._type});

  # The value a single definition stands for when it is an mkIf whose
  # condition is true or an mkOverride with a priority above the option
  # default's, around anything (finalizeDefs gives the same); else itself.
  unwrapDef = v:
    if v._type == "override" && isInt v.priority && v.priority < 1500 then v.content
    else if v._type == "if" && v.condition == true then v.content
    else v;

  # Definitions of one option/element -> the definitions that count
  # (conditions evaluated, highest priority only, ordered). The option
  # default takes part with priority 1500.
  finalizeDefs = declFile: opt: defs:
    if defs == [ ] then (if opt ? default then [ { file = declFile; value = opt.default; } ] else [ ])
    else if tail defs == [ ] then
      # One definition: plain, or one mkIf / high-priority mkOverride around a
      # plain value (what the general case below computes for those).
      (let d = head defs; v = d.value; in
       if isPlainDef d then defs
       else if v._type == "if" && !(isProp v.content) then
         (if checkCondition d.file v.condition then [ { inherit (d) file; prio = null; order = null; value = v.content; } ]
          else if opt ? default then [ { file = declFile; value = opt.default; } ]
          else [ ])
       else if v._type == "override" && isInt v.priority && v.priority < 1500 && !(isProp v.content) then
         [ { inherit (d) file; value = v.content; } ]
       else finalizeAll declFile opt defs)
    else if all isPlainDef defs then defs
    else finalizeAll declFile opt defs;

  finalizeAll = declFile: opt: defs:
      let
        discharged = concatMap (d: dischargeDef null null d.file d.value) defs;
        ds = discharged
          ++ (if opt ? default then [ { file = declFile; value = opt.default; prio = 1500; order = null; } ] else [ ]);
        prioOf = d: if d.prio == null then defaultOverridePriority else d.prio;
        best = foldl' (m: d: min m (prioOf d)) 9999 ds;
        kept = filter (d: prioOf d == best) ds;
        ordOf = d: if d.order == null then defaultOrderPriority else d.order;
        ordered = if any (d: d.order != null) kept then sort (x: y: ordOf x < ordOf y) kept else kept;
      in
      # only mkIf/mkMerge (no mkOverride/mkOrder) and something left: all of it counts
      if discharged != [ ] && all (d: d.prio == null && d.order == null) discharged then discharged
      else map (d: { inherit (d) file value; }) ordered;

  notDefinedMsg = ctx: loc:
    "carrier: the option '${showOption loc}' is used but not defined"
    + (if ctx.files == [ ] then "" else " (machine defined in ${showFiles ctx.files})");

  typeErrorMsg = loc: type: d:
    "carrier: the option '${showOption loc}' has a value that is not of type '${type.description}' in '${d.file}': ${showValue d.value}";

  conflictMsg = loc: defs:
    "carrier: the option '${showOption loc}' has conflicting definitions: "
    + joinAnd (map (d: "${showValue d.value} in '${d.file}'") defs);

  mergeWith = type: declFile: loc: defs:
    if type ? merge' then type.merge' declFile loc defs else type.merge loc defs;

  # Type-check the (non-empty) final definitions and merge them.
  mergeFinal = type: declFile: loc: final:
    if tail final == [ ] then
      (let d = head final; in
       if type.check d.value then
         (if type.isScalar or false then d.value
          else if type ? merge' then type.merge' declFile loc final
          else type.merge loc final)
       else throw (typeErrorMsg loc type d))
    else if all (d: type.check d.value) final then
      (if type ? merge' then type.merge' declFile loc final else type.merge loc final)
    else throw (typeErrorMsg loc type (head (filter (d: !(type.check d.value)) final)));

  noCtx = { files = [ ]; config = throw "carrier: internal error: no configuration"; };

  # Full merge of the raw definitions of an element (attrsOf value, list entry).
  mergeElemDefs = type: declFile: loc: defs:
    let final = finalizeDefs declFile { } defs; in
    if final == [ ] then throw (notDefinedMsg noCtx loc)
    else mergeFinal type declFile loc final;

  # ------------------------------------------------------------------ types
  mergeEqualOption = loc: defs:
    let first = (head defs).value; in
    if all (d: d.value == first) (tail defs) then first
    else throw (conflictMsg loc defs);

  mergeOneOption = loc: defs:
    if tail defs == [ ] then (head defs).value
    else throw "carrier: the option '${showOption loc}' is defined multiple times, in ${showFiles (map (d: d.file) defs)}";

  mergeDefaultOption = loc: defs:
    let list = map (d: d.value) defs; in
    if tail list == [ ] then head list
    else if all isFunction list then x: mergeDefaultOption loc (map (d: d // { value = d.value x; }) defs)
    else if all isList list then concatLists list
    else if all isAttrs list then foldl' (x: y: x // y) { } list
    else if all isBool list then any id list
    else if all isString list then concatStrings list
    else if all isInt list && all (x: x == head list) list then head list
    else throw (conflictMsg loc defs);

  # nixpkgs' optionDescriptionPhrase
  phrase = unparenthesize: t:
    if unparenthesize (t.descriptionClass or null) then t.description else "(${t.description})";

  typeMergeOf = a: c:
    if a ? typeMerge then a.typeMerge c
    else if a.name == c.name && a.description == c.description then a
    else null;

  mkOptionType =
    { name
    , description ? null
    , descriptionClass ? null
    , check ? (_: true)
    , merge ? mergeDefaultOption
    , ...
    }@attrs:
    fix (self: attrs // {
      _type = "option-type";
      inherit name check merge descriptionClass;
      description = if description == null then name else description;
      typeMerge = attrs.typeMerge or (other: if other.name == name && other.description == self.description then self else null);
    });

  mkScalar = name: description: check: mkOptionType {
    inherit name description check;
    descriptionClass = "noun";
    merge = mergeEqualOption;
    isScalar = true;
  };

  intBetween = lo: hi: description: mkScalar "intBetween" description (x: isInt x && x >= lo && x <= hi);

  separatedString = sep: mkOptionType {
    name = "separatedString";
    description =
      if sep == "" then "Concatenated string"
      else "strings concatenated with ${toJSON sep}";
    descriptionClass = "noun";
    check = isString;
    merge = loc: defs: concatStringsSep sep (map (d: d.value) defs);
    isScalar = true;
  };

  types = rec {
    isType = t: x: isAttrs x && x._type or null == "option-type" && x.name == t;

    unspecified = mkOptionType { name = "unspecified"; description = "unspecified value"; descriptionClass = "noun"; isScalar = true; };
    raw = mkOptionType { name = "raw"; description = "raw value"; descriptionClass = "noun"; merge = mergeOneOption; isScalar = true; };
    bool = mkScalar "bool" "boolean" isBool;
    int = mkScalar "int" "signed integer" isInt;
    ints = {
      between = lo: hi: intBetween lo hi "integer between ${toString lo} and ${toString hi} (both inclusive)";
      unsigned = mkScalar "unsignedInt" "unsigned integer, meaning >=0" (x: isInt x && x >= 0);
      positive = mkScalar "positiveInt" "positive integer, meaning >0" (x: isInt x && x > 0);
      u8 = intBetween 0 255 "8 bit unsigned integer; between 0 and 255 (both inclusive)";
      u16 = intBetween 0 65535 "16 bit unsigned integer; between 0 and 65535 (both inclusive)";
      u32 = intBetween 0 4294967295 "32 bit unsigned integer; between 0 and 4294967295 (both inclusive)";
      s8 = intBetween (-128) 127 "8 bit signed integer; between -128 and 127 (both inclusive)";
      s16 = intBetween (-32768) 32767 "16 bit signed integer; between -32768 and 32767 (both inclusive)";
      s32 = intBetween (-2147483648) 2147483647 "32 bit signed integer; between -2147483648 and 2147483647 (both inclusive)";
    };
    port = ints.u16;
    float = mkScalar "float" "floating point number" isFloat;
    number = either int float;
    str = mkScalar "str" "string" isString;
    nonEmptyStr = mkScalar "nonEmptyStr" "non-empty string" (x: isString x && match "[ \t\n]*" x == null);
    singleLineStr = mkScalar "singleLineStr" "(optionally newline-terminated) single-line string" (x: isString x && match "[^\n]*\n?" x != null);
    strMatching = pattern: mkScalar "strMatching ${toJSON pattern}" "string matching the pattern ${pattern}" (x: isString x && match pattern x != null);
    inherit separatedString;
    lines = separatedString "\n";
    commas = separatedString ",";
    envVar = separatedString ":";
    string = separatedString "";
    path = mkScalar "path" "path" (x: isPath x || (isString x && substring 0 1 x == "/"));
    # A derivation or a store path string (system modules: pkgs.foo).
    package = mkOptionType {
      name = "package";
      description = "package";
      descriptionClass = "noun";
      check = x: (isAttrs x && x.type or null == "derivation") || (isString x && substring 0 1 x == "/");
      merge = mergeOneOption;
      isScalar = true;
    };

    attrs = mkOptionType {
      name = "attrs";
      description = "attribute set";
      descriptionClass = "noun";
      check = isAttrs;
      merge = loc: defs: foldl' (res: d: res // d.value) { } defs;
      isScalar = true;
    };

    anything = mkOptionType {
      name = "anything";
      description = "anything";
      descriptionClass = "noun";
      check = _: true;
      merge' = declFile: loc: defs:
        let
          typeOfDef = v: typeOf v;
          t0 = typeOfDef (head defs).value;
          common = foldl' (t: d:
            if typeOfDef d.value == t then t
            else throw "carrier: the option '${showOption loc}' has conflicting option types in ${showFiles (map (d: d.file) defs)}"
          ) t0 defs;
        in
        if common == "set" then mergeWith (attrsOf anything) declFile loc defs
        else if common == "lambda" then
          (arg: mergeWith anything declFile (loc ++ [ "<function body>" ]) (map (d: { inherit (d) file; value = d.value arg; }) defs))
        else mergeEqualOption loc defs;
      merge = loc: defs: anything.merge' "<unknown-file>" loc defs;
    };

    enum = values:
      let
        show = v: if isString v then toJSON v else if isInt v then toString v else if isBool v then (if v then "true" else "false") else "<${typeOf v}>";
      in
      mkOptionType {
        name = "enum";
        description =
          if values == [ ] then "impossible (empty enum)"
          else if tail values == [ ] then "value ${show (head values)} (singular enum)"
          else "one of ${concatMapStringsSep ", " show values}";
        descriptionClass = if tail values == [ ] then "noun" else "conjunction";
        check = x: elem x values;
        merge = mergeEqualOption;
        isScalar = true;
        functorValues = values;
        typeMerge = other: if other.name == "enum" then enum (unique (values ++ other.functorValues)) else null;
      };

    nullOr = elemType:
      let
        merge' = declFile: loc: defs:
          if tail defs == [ ] then
            (if (head defs).value == null then null else elemMerge declFile loc defs)
          else
            let nulls = count (d: d.value == null) defs; in
            if nulls == length defs then null
            else if nulls != 0 then throw (conflictMsg loc defs)
            else elemMerge declFile loc defs;
        elemMerge = if elemType ? merge' then elemType.merge' else (_: elemType.merge);
      in
      mkOptionType {
        name = "nullOr";
        memoDefault = elemType.memoDefault or true;
        description = "null or ${phrase (c: c == "noun" || c == "conjunction") elemType}";
        descriptionClass = "conjunction";
        check = x: x == null || elemType.check x;
        inherit merge' elemType;
        merge = merge' "<unknown-file>";
        isScalar = elemType.isScalar or false;
        typeMerge = other:
          if other.name == "nullOr" then
            (let e = typeMergeOf elemType other.elemType; in if e == null then null else nullOr e)
          else null;
      } // optionalAttrs (elemType ? mergeOne) {
        mergeOne = declFile: loc: file: v: if v == null then null else elemType.mergeOne declFile loc file v;
      };

    listOf = elemType:
      let
        scalar = elemType.isScalar or false;
        # elements passing a check of this scalar type cannot be mkIf & co.
        plainCheck = scalar && !(elemType.check (mkIf true null));
        merge' = declFile: loc: defs:
          if (if plainCheck then all (d: all elemType.check d.value) defs else scalar && all (d: !(any isProp d.value)) defs) then
            (if tail defs == [ ] then (head defs).value else concatMap (d: d.value) defs)
          else if tail defs == [ ] && all isAttrs (head defs).value && catAttrs "_type" (head defs).value == [ ] then
            # one definition, of attribute sets (e.g. submodules) none of which
            # is an mkIf & co.
            (let d = head defs; elemMerge = if elemType ? merge' then elemType.merge' declFile else elemType.merge; in
             genList (i:
               let x = elemAt d.value i; in
               if elemType.check x then
                 (if scalar then x
                  else if elemType ? mergeOne then elemType.mergeOne declFile (loc ++ [ "[${toString i}]" ]) d.file x
                  else elemMerge (loc ++ [ "[${toString i}]" ]) [ { inherit (d) file; value = x; } ])
               else throw (typeErrorMsg (loc ++ [ "[${toString i}]" ]) elemType { inherit (d) file; value = x; })) (length d.value))
          else
            let
              items = concatMap (d: concatMap (x:
                if isAttrs x && x ? _type && propTypes ? ${x._type} then
                  map (e: { inherit (d) file; value = e.value; }) (dischargeDef null null d.file x)
                else [ { inherit (d) file; value = x; } ]) d.value) defs;
              elemMerge = if elemType ? merge' then elemType.merge' declFile else elemType.merge;
            in
            genList (i:
              let it = elemAt items i; in
              if elemType.check it.value then
                (if scalar then it.value else elemMerge (loc ++ [ "[${toString i}]" ]) [ it ])
              else throw (typeErrorMsg (loc ++ [ "[${toString i}]" ]) elemType it)) (length items);
      in
      mkOptionType ({
        name = "listOf";
        description = "list of ${phrase (c: c == "noun" || c == "composite") elemType}";
        descriptionClass = "composite";
        check = x: isList x && (all elemType.check x || all (e: elemType.check e || isProp e) x);
        inherit merge' elemType;
        merge = merge' "<unknown-file>";
        typeMerge = other:
          if other.name == "listOf" then
            (let e = typeMergeOf elemType other.elemType; in if e == null then null else listOf e)
          else null;
      } // optionalAttrs plainCheck {
        # a plain list of values of this scalar element type is its own merge
        plainElemCheck = elemType.check;
      } // optionalAttrs (!scalar && elemType ? mergeOne) {
        # merge' of one definition (e.g. a list of submodule definitions)
        mergeOne = declFile: loc: file: v:
          if isList v && all isAttrs v && catAttrs "_type" v == [ ] then
            genList (i:
              let x = elemAt v i; in
              if elemType.check x then elemType.mergeOne declFile (loc ++ [ "[${toString i}]" ]) file x
              else throw (typeErrorMsg (loc ++ [ "[${toString i}]" ]) elemType { inherit file; value = x; })) (length v)
          else merge' declFile loc [ { inherit file; value = v; } ];
      });

    nonEmptyListOf = elemType:
      let l = listOf elemType; in
      removeAttrs l [ "plainElemCheck" ] // {
        description = "non-empty ${l.description}";
        check = x: x != [ ] && l.check x;
      };

    # Keys are found without evaluating mkIf conditions when possible; see the
    # header. The option-level lazy push-down is in optionFinal (lazyKeys).
    attrsOf = elemType:
      let
        scalar = elemType.isScalar or false;
        merge' = declFile: loc: defs:
          let
            elemMerge = if elemType ? merge' then elemType.merge' declFile else elemType.merge;
            vals = catAttrs "value" defs;
            allVals = concatMap attrValues vals;
            # Several definitions that define one name each (e.g. one machine
            # per module), none under mkIf & co.: grouped by groupBy.
            simple = tail defs != [ ] && length allVals == length vals && !(elem { } vals)
              && catAttrs "_type" (filter isAttrs allVals) == [ ];
            grouped =
              if tail defs == [ ] then
                (let d = head defs; in mapAttrs (_: v: [ { inherit (d) file; value = v; } ]) d.value)
              else zipAttrsWith (_: vs: vs) (map (d: mapAttrs (_: v: { inherit (d) file; value = v; }) d.value) defs);
            uncond = ds: any (d: hasUnconditional d.value) ds;
            kept =
              if all (n: uncond grouped.${n}) (attrNames grouped) then grouped
              else filterAttrs (_: ds: uncond ds || any (d: survives d.file d.value) ds) grouped;
          in
          if simple then
            mapAttrs (n: ds:
              if tail ds == [ ] then
                (let d = head ds; x = d.value.${n}; in
                 if elemType.check x then
                   (if scalar then x
                    else if elemType ? mergeOne then elemType.mergeOne declFile (loc ++ [ n ]) d.file x
                    else elemMerge (loc ++ [ n ]) [ { inherit (d) file; value = x; } ])
                 else throw (typeErrorMsg (loc ++ [ n ]) elemType { inherit (d) file; value = x; }))
              else mergeFinal elemType declFile (loc ++ [ n ]) (map (d: { inherit (d) file; value = d.value.${n}; }) ds))
              (groupBy (d: head (attrNames d.value)) defs)
          else
          mapAttrs (n: ds:
            if all isPlainDef ds then
              (if tail ds == [ ] then
                 (let d = head ds; in
                  if elemType.check d.value then (if scalar then d.value else elemMerge (loc ++ [ n ]) ds)
                  else throw (typeErrorMsg (loc ++ [ n ]) elemType d))
               else mergeFinal elemType declFile (loc ++ [ n ]) ds)
            else mergeElemDefs elemType declFile (loc ++ [ n ]) ds) kept;
      in
      mkOptionType {
        name = "attrsOf";
        description = "attribute set of ${phrase (c: c == "noun" || c == "composite") elemType}";
        descriptionClass = "composite";
        check = isAttrs;
        lazyKeys = true;
        inherit merge' elemType;
        merge = merge' "<unknown-file>";
        typeMerge = other:
          if other.name == "attrsOf" then
            (let e = typeMergeOf elemType other.elemType; in if e == null then null else attrsOf e)
          else null;
      };
    lazyAttrsOf = attrsOf;

    uniq = elemType: mkOptionType {
      name = "uniq";
      inherit (elemType) description check;
      descriptionClass = elemType.descriptionClass or null;
      merge = mergeOneOption;
      isScalar = true;
      inherit elemType;
    };
    unique = { message }: uniq;

    either = t1: t2: mkOptionType {
      name = "either";
      description = "${phrase (c: c == "noun" || c == "conjunction") t1} or ${phrase (c: c == "noun" || c == "conjunction" || c == "composite") t2}";
      descriptionClass = "conjunction";
      check = x: t1.check x || t2.check x;
      merge' = declFile: loc: defs:
        if all (d: t1.check d.value) defs then mergeWith t1 declFile loc defs
        else if all (d: t2.check d.value) defs then mergeWith t2 declFile loc defs
        else mergeOneOption loc defs;
      merge = loc: defs: (either t1 t2).merge' "<unknown-file>" loc defs;
      isScalar = (t1.isScalar or false) && (t2.isScalar or false);
    };
    oneOf = ts:
      if ts == [ ] then throw "carrier: types.oneOf needs at least one type"
      else foldl' either (head ts) (tail ts);

    functionTo = elemType: mkOptionType {
      name = "functionTo";
      description = "function that evaluates to a(n) ${phrase (c: c == "noun" || c == "composite") elemType}";
      descriptionClass = "composite";
      check = isFunction;
      merge' = declFile: loc: defs: fnArgs:
        mergeElemDefs elemType declFile (loc ++ [ "<function body>" ]) (map (d: { inherit (d) file; value = d.value fnArgs; }) defs);
      merge = loc: defs: fnArgs:
        mergeElemDefs elemType "<unknown-file>" (loc ++ [ "<function body>" ]) (map (d: { inherit (d) file; value = d.value fnArgs; }) defs);
    };

    submoduleWith =
      { modules
      , specialArgs ? { }
      , shorthandOnlyDefinesConfig ? false
      , description ? null
      , ...
      }@attrs:
      let
        base = toList modules;
        generic = declFile: loc: defs:
          (evalModulesWith {
            entries =
              map (m: { file = declFile; module = m; configOnly = false; }) base
              ++ map (d: { inherit (d) file; module = d.value; configOnly = shorthandOnlyDefinesConfig; }) defs;
            specialArgs = { name = last loc; } // specialArgs;
            prefix = loc;
            ctxFiles = uniqueStrings (map (d: d.file) defs);
          }).config;
        # The usual case: definitions are plain (config-only) attribute sets
        # and the base modules import nothing. Same result as `generic`,
        # without the module collection machinery.
        argNames = [ "lib" "config" "options" "name" ] ++ attrNames specialArgs;
        # What does not depend on the element, per base module: attribute-set
        # modules are normalized once and their option trees planned once
        # (planOf); for functions, whether every argument they take exists.
        baseInfo = map (m:
          if isAttrs m && !(m ? _type)
            && (!(m ? config || m ? options) || removeAttrs m moduleKeys == { })
          then
            let n = normalizeApplied "" m; in
            {
              kind = "static";
              file = if m ? _file then n.file else null;
              inherit (n) imports options config;
              plan = if n.options == { } then null else planOf (m._pureDefaults or false) n.options;
            }
          else if isFunction m then
            (let fa = functionArgs m; in
             {
               kind = "function"; module = m; direct = fa != { } && removeAttrs fa argNames == { }; inherit fa; imports = null;
               # `{ config, ... }:` (and no specialArgs named config)
               onlyConfig = attrNames fa == [ "config" ] && !(specialArgs ? config);
             })
          else { kind = "other"; module = m; imports = null; }) base;
        general = declFile: loc: defs:
          let
            args = { inherit lib config options; name = last loc; } // specialArgs;
            bases = map (i:
              if i.kind == "static" then
                { file = if i.file == null then declFile else i.file; inherit (i) imports options config plan; }
              else if i.kind == "function" then
                normalizeApplied declFile (if i.direct then i.module (intersectAttrs i.fa args) else applyModule declFile args i.module)
              else if isAttrs i.module then normalizeApplied declFile i.module
              else (let f = toString i.module; in normalizeModule args f f true (import i.module))) baseInfo;
            simple = all (m: m.imports == [ ]) bases;
            ctx = { files = uniqueStrings (map (d: d.file) defs); inherit config; };
            decls = concatMap (m: if m.options == { } then [ ] else [ { inherit (m) file; value = m.options; plan = m.plan or null; } ]) bases;
            defs' = concatMap (m: if m.config == { } then [ ] else [ { inherit (m) file; value = m.config; } ]) bases ++ defs;
            g = groupDefs loc defs';
            config = configOf ctx loc decls defs' g;
            options = (evalLevelG ctx loc decls g).options;
          in
          if simple then config else generic declFile loc defs;
        # Common shapes, with the same results as `general`: one static module
        # declaring options ("S"), one function module returning only options
        # ("D"), or one of each ("SD", "DS"; e.g. static options plus those
        # that need `config`).
        isS = i: i.kind == "static" && i.imports == [ ] && i.config == { } && i.options != { };
        isD = i: i.kind == "function" && i.direct;
        shape =
          let n = length baseInfo; b0 = head baseInfo; b1 = elemAt baseInfo 1; in
          if n == 1 && isS b0 then "S"
          else if n == 1 && isD b0 then "D"
          else if n == 2 && isS b0 && isD b1 then "SD"
          else if n == 2 && isD b0 && isS b1 then "DS"
          else "any";
        sInfo = if shape == "DS" then elemAt baseInfo 1 else head baseInfo;
        dInfo = if shape == "SD" then elemAt baseInfo 1 else head baseInfo;
        # the function module's result, when it is `{ options = ...; }` only
        onlyOptions = r: isAttrs r && r ? options && removeAttrs r [ "options" ] == { } && isAttrs r.options && r.options != { };
        mergeD = declFile: loc: defs:
          let
            r = dInfo.module (
              if dInfo.onlyConfig then { inherit config; }
              else intersectAttrs dInfo.fa ({ inherit lib config options; name = last loc; } // specialArgs));
            ctx = { files = uniqueStrings (map (d: d.file) defs); inherit config; };
            config = evalLevel1G ctx loc declFile r.options (groupDefs loc defs);
            options = (evalLevel ctx loc [ { file = declFile; value = r.options; } ] defs).options;
          in
          if onlyOptions r then config else general declFile loc defs;
        mergeSD = declFile: loc: defs:
          let
            r = dInfo.module (
              if dInfo.onlyConfig then { inherit config; }
              else intersectAttrs dInfo.fa ({ inherit lib config options; name = last loc; } // specialArgs));
            ctx = { files = uniqueStrings (map (d: d.file) defs); inherit config; };
            dDecl = { file = declFile; value = r.options; };
            sDecl = { file = if sInfo.file == null then declFile else sInfo.file; value = sInfo.options; plan = sInfo.plan; };
            g = groupDefs loc defs;
            unmatched = removeAttrs (removeAttrs g.dv sInfo.plan.names) (attrNames r.options);
            config =
              if unmatched != { } then unknownOption loc g unmatched
              else if defs == [ ] then
                plannedLevelG ctx loc (if sInfo.file == null then declFile else sInfo.file) sInfo.plan noDefs
                  (evalLevel1G ctx loc declFile r.options noDefs)
              else
                plannedLevelG ctx loc (if sInfo.file == null then declFile else sInfo.file) sInfo.plan
                  { one = true; inherit (g) oneFile; dv = intersectAttrs sInfo.options g.dv; }
                  (evalLevel1G ctx loc declFile r.options { one = true; inherit (g) oneFile; dv = intersectAttrs r.options g.dv; });
            options = (evalLevel ctx loc (if shape == "SD" then [ sDecl dDecl ] else [ dDecl sDecl ]) defs).options;
          in
          if onlyOptions r && (g.one || defs == [ ]) && intersectAttrs r.options sInfo.options == { } then config
          else general declFile loc defs;
        mergeS = declFile: loc: defs:
          let
            ctx = { files = uniqueStrings (map (d: d.file) defs); inherit config; };
            config = plannedLevel ctx loc (if sInfo.file == null then declFile else sInfo.file) sInfo.plan defs;
          in
          config;
        # shape "S" and one plain definition (`file`, `v`; the usual case):
        # already grouped
        sFast = shape == "S" && shorthandOnlyDefinesConfig && isAttrs sInfo.options;
        # merge' of one definition, without building the list
        mergeOne = declFile: loc: file: v:
          if sFast && isAttrs v && !(v ? _type) then
            let
              ctx = { files = [ file ]; inherit config; };
              config = plannedLevelG ctx loc (if sInfo.file == null then declFile else sInfo.file) sInfo.plan
                { one = true; oneFile = file; dv = v; } { };
            in
            config
          else merge' declFile loc [ { inherit file; value = v; } ];
        merge' = declFile: loc: defs:
          if sFast && defs != [ ] && tail defs == [ ] && isAttrs (head defs).value && !((head defs).value ? _type) then
            mergeOne declFile loc (head defs).file (head defs).value
          else if shorthandOnlyDefinesConfig && (if defs != [ ] && tail defs == [ ] then isAttrs (head defs).value else all (d: isAttrs d.value) defs) then
            (if shape == "S" then mergeS declFile loc defs
             else if shape == "D" then mergeD declFile loc defs
             else if shape == "any" then general declFile loc defs
             else mergeSD declFile loc defs)
          else generic declFile loc defs;
      in
      mkOptionType {
        name = "submodule";
        memoDefault = false;
        description = if description == null then "submodule" else description;
        descriptionClass = "noun";
        check = x: isAttrs x || isFunction x || isPath x;
        inherit merge' mergeOne;
        merge = merge' "<unknown-file>";
        getSubModules = base;
        submoduleArgs = attrs;
        typeMerge = other:
          if other.name == "submodule" then
            submoduleWith (attrs // {
              modules = base ++ other.getSubModules;
              specialArgs = specialArgs // (other.submoduleArgs.specialArgs or { });
            })
          else null;
      };

    submodule = modules: submoduleWith {
      shorthandOnlyDefinesConfig = true;
      modules = toList modules;
    };
  };

  # ------------------------------------------------------------------ options
  isOption = x: isAttrs x && x._type or null == "option";

  # The merged default (before `apply`) is computed once per declaration and
  # shared by every evaluation that leaves the option undefined (e.g. the same
  # option of 1000 machines). It is only used while `default` and `type` are
  # still the ones it was computed from (`mkOption {...} // { default = x; }`
  # is common) and for types whose merge does not depend on the option path
  # (not for submodules, whose `name` argument is the last path element).
  defaultMemoOf = declFile: attrs:
    let type = attrs.type or types.unspecified; in
    {
      inherit (attrs) default;
      inherit type;
      ok = ((type.memoDefault or true) || attrs.default == null) && type.check attrs.default;
      value =
        if (type.isScalar or false) then attrs.default
        else mergeWith type declFile [ "<default>" ] [ { file = declFile; value = attrs.default; } ];
    };

  mkOption = attrs:
    attrs // {
      _type = "option";
      _defaultMemo = if attrs ? default then defaultMemoOf "<declaration>" attrs else null;
    };

  mkEnableOption = name: mkOption {
    type = types.bool;
    default = false;
    example = true;
    description = "Whether to enable ${name}.";
  };

  mkSinkUndeclaredOptions = attrs: mkOption ({
    internal = true;
    visible = false;
    default = false;
    type = mkOptionType { name = "sink"; check = _: true; merge = _: _: false; };
  } // attrs);

  # Option attributes that need the configuration of the evaluation declaring
  # the option (e.g. the element of a submodule type):
  #   mkOption { ... } // withConfig (config: { apply = ...; })
  # is the option `mkOption { ... } // { apply = ...; }` declared by a module
  # `{ config, ... }:` of that evaluation. Static option trees (attribute-set
  # modules, see planOf) can so hold such options.
  withConfig = f: { _withConfig = f; };
  isWcOption = o: isAttrs o && o ? _withConfig && o._type or null == "option";
  withConfigOf = ctx: o: o // o._withConfig ctx.config;
  # the same without `_withConfig` (for code that looks for it again)
  withConfigOf' = ctx: o: removeAttrs o [ "_withConfig" ] // o._withConfig ctx.config;

  # Several declarations of one option -> { option, file (of the default), files }
  mergeDecls = loc: ds:
    if tail ds == [ ] then
      (let d = head ds; in { option = d.value; file = d.file; files = [ d.file ]; })
    else
      let
        merged = foldl' (acc: d:
          let
            a = acc.option;
            o = d.value;
            already = "carrier: the option '${showOption loc}' in '${d.file}' is already declared in ${showFiles acc.files}";
            t =
              if a ? type && o ? type then
                (let m = typeMergeOf a.type o.type; in
                 if m == null then throw "${already} with the incompatible type '${a.type.description}' (here: '${o.type.description}')" else m)
              else a.type or o.type or types.unspecified;
          in
          if (a ? default && o ? default) || (a ? apply && o ? apply) then throw already
          else {
            option = removeAttrs a [ "_defaultMemo" ] // removeAttrs o [ "_defaultMemo" ] // { type = t; };
            file = if o ? default then d.file else acc.file;
            files = acc.files ++ [ d.file ];
          }
        ) { option = { }; file = (head ds).file; files = [ ]; } ds;
      in
      merged // {
        option = merged.option // optionalAttrs (merged.option ? default) {
          _defaultMemo = defaultMemoOf merged.file merged.option;
        };
      };

  # Final definitions of an option (raw definitions `defs`, possibly empty).
  optionFinal = declFile: opt: type: defs:
    if defs != [ ] && (type.lazyKeys or false) then
      (if all (d: let v = d.value; in isAttrs v && !(v ? _type)) defs then
         # plain attribute sets (the usual case): nothing to push down
         (if !(opt ? default) || opt.default == { } then defs else finalizeDefs declFile opt defs)
       else if !(any (d: hasTopOverride d.value) defs) && (!(opt ? default) || opt.default == { }) then
         concatMap (d: pushDownWith keepBad d.file d.value) defs
       else finalizeDefs declFile opt defs)
    else finalizeDefs declFile opt defs;

  # The value of an option with raw definitions `defs` (non-empty).
  optionValue = ctx: loc: declFile: opt: defs:
    let
      type = opt.type or types.unspecified;
      final = if type.lazyKeys or false then optionFinal declFile opt type defs else finalizeDefs declFile opt defs;
      merged = if final == [ ] then throw (notDefinedMsg ctx loc) else mergeFinal type declFile loc final;
    in
    if opt ? apply then opt.apply merged else merged;

  # The value of an option nobody defined.
  # defaultValue of an option with a default but no memo (e.g. `mkOption
  # { ... } // { default = ...; }`).
  defaultNoMemo = ctx: loc: declFile: opt:
    let type = opt.type or types.unspecified; d = opt.default; in
    if type.check d then
      (let
         merged =
           if type.isScalar or false then d
           else if type ? mergeOne then type.mergeOne declFile loc declFile d
           else if type ? merge' then type.merge' declFile loc [ { file = declFile; value = d; } ]
           else type.merge loc [ { file = declFile; value = d; } ];
       in
       if opt ? apply then opt.apply merged else merged)
    else defaultValue ctx loc declFile opt;

  defaultValue = ctx: loc: declFile: opt:
    if !(opt ? default) then throw (notDefinedMsg ctx loc)
    else
      let
        type = opt.type or types.unspecified;
        memo = opt._defaultMemo or null;
        merged =
          if memo != null && memo.ok && memo.default == opt.default && memo.type == type then memo.value
          else mergeFinal type declFile loc [ { file = declFile; value = opt.default; } ];
      in
      if opt ? apply then opt.apply merged else merged;

  # What `options.<path>` shows for an option.
  optionInfo = ctx: loc: decl: defs:
    let
      opt = decl.option;
      type = opt.type or types.unspecified;
      final = optionFinal decl.file opt type defs;
    in
    removeAttrs opt [ "_defaultMemo" "_withConfig" ] // {
      inherit loc type;
      value = if defs == [ ] then defaultValue ctx loc decl.file opt else optionValue ctx loc decl.file opt defs;
      isDefined = final != [ ];
      declarations = decl.files;
      definitionsWithLocations = final;
      definitions = map (d: d.value) final;
      files = uniqueStrings (map (d: d.file) final);
    };

  groupByName = list:
    if list == [ ] then { }
    else if tail list == [ ] then
      (let p = head list; in mapAttrs (_: v: [ { inherit (p) file; value = v; } ]) p.value)
    else zipAttrsWith (_: vs: vs) (map (p: mapAttrs (_: v: { inherit (p) file; value = v; }) p.value) list);

  levelBad = loc: file: v:
    throw "carrier: the option '${showOption loc}' is a set of options, but is defined as a non-attribute-set value in '${file}': ${showValue v}";

  badDeclMsg = loc: file:
    "carrier: the option declaration '${showOption loc}' in '${file}' is neither an option (mkOption) nor an attribute set of options";

  # The definitions of one level (sets of values, possibly under
  # mkIf/mkMerge/mkOverride), pushed down and grouped by name:
  #   { one = true; oneFile; dv }: a single definition (the common case, no
  #     grouping); `dv` is its value, `oneFile` its file;
  #   { one = false; dv }: `dv` maps each defined name to [ { file, value } ].
  groupDefs = loc: defs:
    if defs == [ ] then noDefs
    else if tail defs == [ ] && isAttrs (head defs).value && !((head defs).value ? _type) then
      { one = true; oneFile = (head defs).file; dv = (head defs).value; }
    else
      let
        pushed = concatMap (d:
          let v = d.value; in
          if isAttrs v && !(v ? _type) then [ d ] else pushDownWith (levelBad loc) d.file v) defs;
        one = pushed != [ ] && tail pushed == [ ];
      in
      { inherit one; oneFile = (head pushed).file; dv = if one then (head pushed).value else groupByName pushed; };

  noDefs = { one = false; oneFile = null; dv = { }; };

  unknownOption = loc: g: unmatched:
    let n = head (attrNames unmatched); in
    throw "carrier: the option '${showOption (loc ++ [ n ])}' does not exist (defined in ${showFiles (if g.one then [ g.oneFile ] else uniqueStrings (map (d: d.file) unmatched.${n}))})";

  # The config of a (sub-)tree of declarations from one module that nobody
  # defines: every option's default (evalLevel without the bookkeeping).
  defaultsTree = ctx: loc: file: tree:
    if !(isAttrs tree) then throw (badDeclMsg loc file)
    else
      mapAttrs (n: o:
        if o ? _withConfig && o._type or null == "option" then (defaultsTree ctx loc file { ${n} = withConfigOf' ctx o; }).${n}
        else if o._type or null == "option" then
          let m = o._defaultMemo or null; in
          if m != null && (!(o ? apply) || o ? default) && m.ok && m.default == o.default && m.type == (o.type or types.unspecified)
          then (if o ? apply then o.apply m.value else m.value)
          else defaultValue ctx (loc ++ [ n ]) file o
        else defaultsTree ctx (loc ++ [ n ]) file o) tree;

  # What every evaluation of a static declaration tree (the `options` of an
  # attribute-set module of a submodule type) shares: its names, the plans of
  # its sub-trees, how plain definitions are checked (`info`) and, when the
  # module is marked `_pureDefaults = true` (its defaults read no
  # configuration), the values of the options and whole sub-trees nobody
  # defines (`shared`, computed once for all elements instead of once per
  # element; `unshared` is the rest of the tree). Only options whose merged
  # default is memoized (see defaultMemoOf) are shared, so the values are the
  # ones the per-element evaluation computes.
  planOf = pure: tree:
    let
      names = attrNames tree;
      sub = mapAttrs (_: o: planOf pure o) tree;
      shareable = n:
        let o = tree.${n}; in
        if o._type or null == "option" then
          (let m = o._defaultMemo or null; in
           m != null && !(o ? _withConfig) && o ? default && m.ok && m.default == o.default && m.type == (o.type or types.unspecified))
        else isAttrs o && sub.${n}.unshared == { };
      sharedNames = filter shareable names;
      # the options with attributes from withConfig
      wc = listToAttrs (concatMap (n: if isWcOption tree.${n} then [ (nameValuePair n true) ] else [ ]) names);
      sharedValue = n:
        let o = tree.${n}; in
        if o._type or null == "option" then
          (if o ? apply then o.apply o._defaultMemo.value else o._defaultMemo.value)
        else sub.${n}.shared;
      # the options with attributes from withConfig: the merged default of
      # their static part, when memoized (see undefinedWithConfig)
      wcBase = mapAttrs (n: _:
        let o = tree.${n}; m = o._defaultMemo or null; in
        if m != null && o ? default && m.ok && m.default == o.default && m.type == (o.type or types.unspecified)
        then { inherit (m) value; } else null) wc;
      # the names, all with the same value
      univ = mapAttrs (_: _: true) tree;
      # an option that has to be defined (then usually is): no default and
      # nothing from withConfig
      required = n: let o = tree.${n}; in o._type or null == "option" && !(o ? default) && !(o ? _withConfig);
      # per name, how a plain definition is checked: kind 1, an option of a
      # scalar type (the definition is the value when `check` accepts it);
      # kind 2, a list of such (`plainElemCheck`); kind 3, a type with
      # `mergeOne` (submodules); 0, anything else.
      info = mapAttrs (_: o:
        if o._type or null == "option" && !(o ? apply) && !(o ? _withConfig) then
          (let t = o.type or types.unspecified; in
           if t.lazyKeys or false then { kind = 0; }
           else if t ? plainElemCheck then { kind = 2; inherit (t) plainElemCheck; }
           else if t.isScalar or false then { kind = 1; inherit (t) check; }
           else if t ? mergeOne then { kind = 3; inherit (t) check mergeOne; }
           else { kind = 0; })
        else { kind = 0; }) tree;
    in
    if pure then {
      inherit tree names sub wc wcBase info univ;
      hasWc = wc != { };
      shared = listToAttrs (map (n: { name = n; value = sharedValue n; }) sharedNames);
      unshared = removeAttrs tree sharedNames;
      unsharedRequired = all required (attrNames (removeAttrs tree sharedNames));
    } else { inherit tree names sub wc wcBase info univ; hasWc = wc != { }; shared = { }; unshared = tree; unsharedRequired = all required names; };

  # The config of one level declared by a single module (the common case):
  # like `(evalLevel ctx loc [ decl ] defs).config` with less bookkeeping.
  # With a plan (see planOf; static trees), the names nobody defines come from
  # the plan, and only the defined names are visited.
  evalLevel1 = ctx: loc: decl: defs:
    if decl.plan or null != null then plannedLevel ctx loc decl.file decl.plan defs
    else if !(isAttrs decl.value) then throw (badDeclMsg loc decl.file)
    else evalLevel1G ctx loc decl.file decl.value (groupDefs loc defs);

  # evalLevel1 of a tree without a plan, with the grouped definitions.
  evalLevel1G = ctx: loc: file: tree: g:
        let unmatched = removeAttrs g.dv (attrNames tree); in
        if unmatched != { } then unknownOption loc g unmatched
        else
          mapAttrs (n: o:
            if o ? _withConfig && o._type or null == "option" then
              # the same with the option's attributes from withConfig
              (evalLevel1G ctx loc file { ${n} = withConfigOf' ctx o; } (g // { dv = intersectAttrs { ${n} = null; } g.dv; })).${n}
            else if g.dv ? ${n} then
              (if o._type or null == "option" then
                 let dn = g.dv.${n}; in
                 if g.one && !(isAttrs dn && dn ? _type) && !(o ? apply) then
                   # one plain definition (the usual case)
                   (let t = o.type or types.unspecified; in
                    if t.lazyKeys or false then optionValue ctx (loc ++ [ n ]) file o [ { file = g.oneFile; value = dn; } ]
                    else if t ? plainElemCheck && isList dn && all t.plainElemCheck dn then dn
                    else if t.check dn then
                      (if t.isScalar or false then dn
                       else if t ? merge' then t.merge' file (loc ++ [ n ]) [ { file = g.oneFile; value = dn; } ]
                       else t.merge (loc ++ [ n ]) [ { file = g.oneFile; value = dn; } ])
                    else optionValue ctx (loc ++ [ n ]) file o [ { file = g.oneFile; value = dn; } ])
                 else
                 let
                   # one mkIf (true) or high-priority mkOverride around a plain value
                   v =
                     if g.one then (if isAttrs dn && dn ? _type then unwrapDef dn else dn)
                     else unwrapIf (head dn).value;
                   t = o.type or types.unspecified;
                 in
                 if (g.one || tail dn == [ ]) && !(o ? apply) && !(t.lazyKeys or false)
                   && !(isAttrs v && v ? _type)
                 then
                   # one plain definition: a list of plain values of a scalar
                   # type, or well-typed
                   (if t ? plainElemCheck && isList v && all t.plainElemCheck v then v
                    else if t.check v then
                      (if t.isScalar or false then v
                       else if t ? merge' then t.merge' file (loc ++ [ n ]) [ { file = if g.one then g.oneFile else (head dn).file; value = v; } ]
                       else t.merge (loc ++ [ n ]) [ { file = if g.one then g.oneFile else (head dn).file; value = v; } ])
                    else optionValue ctx (loc ++ [ n ]) file o (if g.one then [ { file = g.oneFile; value = dn; } ] else dn))
                 else optionValue ctx (loc ++ [ n ]) file o (if g.one then [ { file = g.oneFile; value = dn; } ] else dn)
               else evalLevel1 ctx (loc ++ [ n ]) { inherit file; value = o; } (if g.one then [ { file = g.oneFile; value = g.dv.${n}; } ] else g.dv.${n}))
            else if o._type or null == "option" then
              (let m = o._defaultMemo or null; in
               if m != null && (!(o ? apply) || o ? default) && m.ok && m.default == o.default && m.type == (o.type or types.unspecified)
               then (if o ? apply then o.apply m.value else m.value)
               else if m == null && o ? default then defaultNoMemo ctx (loc ++ [ n ]) file o
               else defaultValue ctx (loc ++ [ n ]) file o)
            else defaultsTree ctx (loc ++ [ n ]) file o) tree;

  unwrapIf = v: if isAttrs v && v ? _type then unwrapDef v else v;

  # The value of the undefined option `o0` with attributes from withConfig
  # (`base`: its static part's memoized default or null); the same as the
  # option `o0 // o0._withConfig ctx.config` gives, without building it when
  # withConfig only adds an `apply` or only a `default`.
  undefinedWithConfig = ctx: loc: file: base: o0:
    let w = o0._withConfig ctx.config; in
    if base != null && !(w ? default || w ? type || w ? _defaultMemo || w ? _type) then
      (if w ? apply then w.apply base.value else if o0 ? apply then o0.apply base.value else base.value)
    else if w ? default && !(o0 ? default || o0 ? apply || w ? type || w ? apply || w ? _defaultMemo || w ? _type)
      && o0._defaultMemo or null == null then
      (let t = o0.type or types.unspecified; d = w.default; in
       if t.check d then
         (if t.isScalar or false then d
          else if t ? mergeOne then t.mergeOne file loc file d
          else if t ? merge' then t.merge' file loc [ { inherit file; value = d; } ]
          else t.merge loc [ { inherit file; value = d; } ])
       else defaultValue ctx loc file (o0 // w))
    else
      let o = o0 // w; m = o._defaultMemo or null; in
      if m != null && (!(o ? apply) || o ? default) && m.ok && m.default == o.default && m.type == (o.type or types.unspecified)
      then (if o ? apply then o.apply m.value else m.value)
      else if m == null && o ? default then defaultNoMemo ctx loc file o
      else defaultValue ctx loc file o;

  # evalLevel1 of a static tree with its plan.
  plannedLevel = ctx: loc: file: plan: defs:
    if !(isAttrs plan.tree) then throw (badDeclMsg loc file)
    else if defs == [ ] then (if plan.unshared == { } then plan.shared else plannedLevelG ctx loc file plan noDefs { })
    else plannedLevelG ctx loc file plan (groupDefs loc defs) { };

  # plannedLevel with the grouped definitions `g` (of a tree: checked
  # already), plus the names in `extra` (another declaration's).
  plannedLevelG = ctx: loc: file: plan: g: extra:
    # names not in the tree (the sizes differ; cheaper than removeAttrs)
    if g.dv // plan.univ != plan.univ then unknownOption loc g (removeAttrs g.dv plan.names)
    else
      plan.shared
      // (if plan.unshared == { } || (plan.unsharedRequired && intersectAttrs g.dv plan.unshared == plan.unshared) then { } else mapAttrs (n: o0:
        if o0 ? _withConfig && o0._type or null == "option" then undefinedWithConfig ctx (loc ++ [ n ]) file plan.wcBase.${n} o0
        else
        let o = o0; in
        if o._type or null == "option" then
          (let m = o._defaultMemo or null; in
           if m != null && (!(o ? apply) || o ? default) && m.ok && m.default == o.default && m.type == (o.type or types.unspecified)
           then (if o ? apply then o.apply m.value else m.value)
           else if m == null && o ? default then defaultNoMemo ctx (loc ++ [ n ]) file o
           else defaultValue ctx (loc ++ [ n ]) file o)
        else if isAttrs o then plannedLevel ctx (loc ++ [ n ]) file plan.sub.${n} [ ]
        else throw (badDeclMsg (loc ++ [ n ]) file)) plan.unshared)
      // mapAttrs (n: dn:
        let i = plan.info.${n}; in
        # one plain definition of an option of a scalar type or a list of such
        if i.kind == 1 && g.one && !(isAttrs dn && dn ? _type) && i.check dn then dn
        else if i.kind == 2 && g.one && isList dn && all i.plainElemCheck dn then dn
        else if i.kind == 3 && g.one && !(isAttrs dn && dn ? _type) && i.check dn then i.mergeOne file (loc ++ [ n ]) g.oneFile dn
        else
        let o = if plan.hasWc && plan.wc ? ${n} then withConfigOf ctx plan.tree.${n} else plan.tree.${n}; in
        if o._type or null == "option" then
          (if g.one && !(isAttrs dn && dn ? _type) && !(o ? apply) then
             # one plain definition (the usual case)
             (let t = o.type or types.unspecified; in
              if t.lazyKeys or false then optionValue ctx (loc ++ [ n ]) file o [ { file = g.oneFile; value = dn; } ]
              else if t ? plainElemCheck && isList dn && all t.plainElemCheck dn then dn
              else if t.check dn then
                (if t.isScalar or false then dn
                 else if t ? merge' then t.merge' file (loc ++ [ n ]) [ { file = g.oneFile; value = dn; } ]
                 else t.merge (loc ++ [ n ]) [ { file = g.oneFile; value = dn; } ])
              else optionValue ctx (loc ++ [ n ]) file o [ { file = g.oneFile; value = dn; } ])
           else let
             # one mkIf (true) or high-priority mkOverride around a plain value
             v =
               if g.one then (if isAttrs dn && dn ? _type then unwrapDef dn else dn)
               else unwrapIf (head dn).value;
             t = o.type or types.unspecified;
           in
           if (g.one || tail dn == [ ]) && !(o ? apply) && !(t.lazyKeys or false)
             && !(isAttrs v && v ? _type)
           then
             # one plain definition: a list of plain values of a scalar type,
             # or well-typed
             (if t ? plainElemCheck && isList v && all t.plainElemCheck v then v
              else if t.check v then
                (if t.isScalar or false then v
                 else if t ? merge' then t.merge' file (loc ++ [ n ]) [ { file = if g.one then g.oneFile else (head dn).file; value = v; } ]
                 else t.merge (loc ++ [ n ]) [ { file = if g.one then g.oneFile else (head dn).file; value = v; } ])
              else optionValue ctx (loc ++ [ n ]) file o (if g.one then [ { file = g.oneFile; value = dn; } ] else dn))
           else optionValue ctx (loc ++ [ n ]) file o (if g.one then [ { file = g.oneFile; value = dn; } ] else dn))
        else if isAttrs o then
          (if g.one && isAttrs dn && !(dn ? _type) then
             # one plain definition: already grouped
             plannedLevelG ctx (loc ++ [ n ]) file plan.sub.${n} { one = true; inherit (g) oneFile; dv = dn; } { }
           else plannedLevel ctx (loc ++ [ n ]) file plan.sub.${n} (if g.one then [ { file = g.oneFile; value = dn; } ] else dn))
        else throw (badDeclMsg (loc ++ [ n ]) file)) g.dv
      // extra;

  # True when no name is declared by two of the trees.
  disjointTrees = decls:
    foldl' (acc: d: if acc != null && intersectAttrs d.value acc == { } then acc // d.value else null) { } decls != null;

  # The config of a level.
  #   decls: [ { file, value = tree, plan (optional, see planOf) } ]
  #   defs:  its definitions; g: groupDefs of them
  # One declaring module, or several declaring disjoint sets of names (e.g. a
  # submodule's static options and those its function module adds) and one
  # definition, take the direct route; anything else the general one
  # (evalLevel).
  configOf = ctx: loc: decls: defs: g:
    if decls != [ ] && tail decls == [ ] then
      (let d = head decls; in
       if d.plan or null != null then plannedLevel ctx loc d.file d.plan defs
       else if !(isAttrs d.value) then throw (badDeclMsg loc d.file)
       else evalLevel1G ctx loc d.file d.value g)
    else if decls != [ ] && (g.one || defs == [ ]) && all (d: isAttrs d.value) decls && disjointTrees decls then
      (let
         unmatched = removeAttrs g.dv (concatMap (d: if d.plan or null != null then d.plan.names else attrNames d.value) decls);
       in
       if unmatched != { } then unknownOption loc g unmatched
       else if defs == [ ] then foldl' (acc: d: acc // evalLevel1 ctx loc d [ ]) { } decls
       else foldl' (acc: d: acc // evalLevel1 ctx loc d [ { file = g.oneFile; value = intersectAttrs d.value g.dv; } ]) { } decls)
    else (evalLevelG ctx loc decls g).config;

  # One level of the option tree.
  #   decls: [ { file, value = attrs of options and sub-levels } ]
  #   defs:  [ { file, value = attrs (possibly under mkIf/mkMerge/mkOverride) } ]
  # Returns { config, options }; `config` throws on definitions of undeclared
  # options.
  evalLevel = ctx: loc: decls: defs: evalLevelG ctx loc decls (groupDefs loc defs);

  evalLevelG = ctx: loc: decls: g:
    let
      # The common case, one module declaring the whole level, avoids
      # grouping: `declsByName` then maps names to the declarations themselves.
      single = tail decls == [ ];
      singleFile = (head decls).file;
      declsByName = if decls == [ ] then { } else if single then (head decls).value else groupByName decls;
      # declarations of one name as a list of { file, value } (options with
      # their attributes from withConfig)
      declsOf = n: d: map (x: if isWcOption x.value then x // { value = withConfigOf' ctx x.value; } else x)
        (if single then [ { file = singleFile; value = d; } ] else d);

      # One definition (the common case): no grouping either.
      singleDef = g.one;
      singleDefFile = g.oneFile;
      singleDefValue = g.dv;
      defsByName = g.dv;
      hasDefs = n: defsByName ? ${n};
      defsOf = n:
        if singleDef then (if singleDefValue ? ${n} then [ { file = singleDefFile; value = singleDefValue.${n}; } ] else [ ])
        else defsByName.${n} or [ ];
      unmatched = removeAttrs defsByName (attrNames declsByName);

      # per name: "option" (one declaration), "options" (several), "level"
      kindOf = n: ds:
        if tail ds == [ ] then (if isOption (head ds).value then "option" else "level")
        else
          let kinds = map (d: isOption d.value) ds; in
          if all id kinds then "options"
          else if any id kinds then
            throw "carrier: the option '${showOption (loc ++ [ n ])}' is declared both as an option and as a set of options, in ${showFiles (uniqueStrings (map (d: d.file) ds))}"
          else "level";

      subLevel = n: d:
        evalLevel ctx (loc ++ [ n ]) (map (d:
          if isAttrs d.value then d
          else throw (badDeclMsg (loc ++ [ n ]) d.file)) (declsOf n d))
          (defsOf n);
      subLevels = mapAttrs subLevel declsByName;

      # value of a name declared once, as option `o` in file `file`
      singleOptionValue = n: file: o:
        if hasDefs n then optionValue ctx (loc ++ [ n ]) file o (defsOf n)
        else defaultValue ctx (loc ++ [ n ]) file o;

      valueOf = n: o0:
        let o = if o0 ? _withConfig && o0._type or null == "option" then withConfigOf' ctx o0 else o0; in
        if single && o._type or null == "option" then
          # fast paths for one declaration: one plain definition of a scalar
          # option, or no definition and the shared merged default
          if hasDefs n then
            let
              v = if singleDef then singleDefValue.${n} else (head defsByName.${n}).value;
              t = o.type or types.unspecified;
            in
            if (singleDef || tail defsByName.${n} == [ ]) && (t.isScalar or false) && !(o ? apply)
              && !(isAttrs v && v ? _type) && t.check v
            then v
            else optionValue ctx (loc ++ [ n ]) singleFile o (defsOf n)
          else
            let m = o._defaultMemo or null; in
            if m != null && (!(o ? apply) || o ? default) && m.ok && m.default == o.default && m.type == (o.type or types.unspecified)
            then (if o ? apply then o.apply m.value else m.value)
            else defaultValue ctx (loc ++ [ n ]) singleFile o
        else if single && !(hasDefs n) then defaultsTree ctx (loc ++ [ n ]) singleFile o
        else
          let ds = declsOf n o; kind = kindOf n ds; in
          if kind == "option" then singleOptionValue n (head ds).file (head ds).value
          else if kind == "options" then
            (let decl = mergeDecls (loc ++ [ n ]) ds; in
             if hasDefs n then optionValue ctx (loc ++ [ n ]) decl.file decl.option (defsOf n)
             else defaultValue ctx (loc ++ [ n ]) decl.file decl.option)
          else if tail ds == [ ] then evalLevel1 ctx (loc ++ [ n ]) (head ds) (defsOf n)
          else subLevels.${n}.config;

      infoOf = n: d:
        let ds = declsOf n d; kind = kindOf n ds; in
        if kind == "level" then subLevels.${n}.options
        else optionInfo ctx (loc ++ [ n ]) (mergeDecls (loc ++ [ n ]) ds) (defsOf n);

      config =
        if unmatched == { } then mapAttrs valueOf declsByName
        else unknownOption loc g unmatched;
    in
    { inherit config; options = mapAttrs infoOf declsByName; };

  # ------------------------------------------------------------------ modules
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
  normalizeApplied = file: m:
    if !(isAttrs m) then throw (notModuleMsg file m)
    else if m ? _type then { inherit file; imports = [ ]; options = { }; config = m; }
    else
      let file' = if m ? _file then toString m._file else file; in
      if m ? config || m ? options then
        let extra = attrNames (removeAttrs m moduleKeys); in
        if extra != [ ] then throw (unsupportedAttrMsg file' extra)
        else { file = file'; imports = m.imports or [ ]; options = m.options or { }; config = m.config or { }; }
      else { file = file'; imports = m.imports or [ ]; options = { }; config = shorthandConfig m; };

  notModuleMsg = file: m:
    "carrier: the module in '${file}' is not a module (expected an attribute set or a function, got a value of type ${typeOf m})";
  unsupportedAttrMsg = file: extra:
    "carrier: the module in '${file}' has an unsupported attribute '${head extra}'. This is caused by introducing a top-level 'config' or 'options' attribute. Add configuration attributes immediately on the top level instead, or move all of them (namely: ${concatStringsSep ", " extra}) into the explicit 'config' attribute.";

  # A module value (function already or not yet applied) -> normalized record.
  normalizeModule = args: file: key: fromPath: m0:
    let m = if isFunction m0 then applyModule file args m0 else m0; in
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

  # A path module -> normalized record (normalizeModule, with the module
  # function applied directly when every argument it takes is available).
  pathModule = args: p:
    let
      f = toString p;
      m0 = import p;
      fa = functionArgs m0;
      m =
        if !(isFunction m0) then m0
        else if fa != { } && intersectAttrs args fa == fa then m0 (intersectAttrs fa args)
        else applyModule f args m0;
    in
    if !(isAttrs m) then throw (notModuleMsg f m)
    else if m ? _type then { key = f; file = f; fromPath = true; imports = [ ]; options = { }; config = m; }
    else
      let
        file' = if m ? _file then toString m._file else f;
        key' = if m ? key then toString m.key else f;
      in
      if m ? config || m ? options then
        let extra = attrNames (removeAttrs m moduleKeys); in
        if extra != [ ] then throw (unsupportedAttrMsg file' extra)
        else { key = key'; file = file'; fromPath = true; imports = m.imports or [ ]; options = m.options or { }; config = m.config or { }; }
      else
        { key = key'; file = file'; fromPath = true; imports = m.imports or [ ]; options = { }; config = shorthandConfig m; };

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
      flat = if all (m: m.imports == [ ]) roots then roots else concatMap (walk [ ]) roots;
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

  lib = {
    inherit lib types evalModules mkOption mkOptionType mkEnableOption mkSinkUndeclaredOptions withConfig
      mkIf mkMerge mkOverride mkOptionDefault mkDefault mkImageMediaOverride mkForce mkVMOverride
      mkOrder mkBefore mkAfter defaultOverridePriority defaultOrderPriority
      isOption showOption showFiles showValue mergeEqualOption mergeOneOption mergeDefaultOption
      dischargeDef hasUnconditional
      id const flip fix min max mod isNull optional optionals optionalAttrs optionalString toList
      last init take drop sublist flatten range imap0 imap1 count foldr foldl reverseList findFirst
      unique uniqueStrings intersectLists subtractLists nameValuePair genAttrs mapAttrs' mapAttrsToList
      filterAttrs zipAttrs attrByPath hasAttrByPath getAttrFromPath setAttrByPath recursiveUpdateUntil
      recursiveUpdate hasPrefix hasSuffix removePrefix removeSuffix concatStrings concatMapStrings
      concatMapStringsSep stringToCharacters escapeRegex splitString toUpper toLower boolToString
      mapNullable assertMsg throwIf throwIfNot warn literalExpression literalMD mdDoc;
    literalExample = literalExpression;
    imap = imap1;
    inherit (b)
      attrNames attrValues isAttrs isList isFunction isString isInt isBool isFloat isPath
      mapAttrs concatMap filter foldl' length head tail elem elemAt genList listToAttrs
      concatStringsSep toJSON fromJSON typeOf all any removeAttrs zipAttrsWith functionArgs
      intersectAttrs substring stringLength replaceStrings match sort genericClosure catAttrs
      hasAttr getAttr split concatLists partition groupBy toString trace seq deepSeq
      pathExists readFile baseNameOf dirOf tryEval;
    strings = { inherit concatStrings concatMapStrings concatMapStringsSep hasPrefix hasSuffix removePrefix removeSuffix splitString toUpper toLower stringToCharacters escapeRegex; };
    lists = { inherit optional optionals toList last init take drop sublist flatten range imap0 imap1 count foldr foldl reverseList findFirst unique intersectLists subtractLists; };
    attrsets = { inherit nameValuePair genAttrs mapAttrs' mapAttrsToList filterAttrs zipAttrs attrByPath hasAttrByPath getAttrFromPath setAttrByPath recursiveUpdate recursiveUpdateUntil optionalAttrs; };
    options = { inherit mkOption mkEnableOption showOption isOption withConfig; };
    modules = { inherit evalModules mkIf mkMerge mkOverride mkDefault mkForce mkOrder mkBefore mkAfter; };
    trivial = { inherit id const flip fix min max mod boolToString; };
  };
in
lib
