# Part of carrier's module system (see modules.nix, assembled by
# module-system.nix): mkOptionType and the option types (`types`), with the
# direct routes of listOf, attrsOf and submodules.
self:
let
  inherit (builtins)
    attrNames attrValues isAttrs isList isFunction isString isInt isBool isFloat isPath
    mapAttrs concatMap filter foldl' length head tail elem elemAt genList
    concatStringsSep toJSON typeOf all any removeAttrs zipAttrsWith functionArgs
    intersectAttrs substring match catAttrs concatLists groupBy;
  inherit (self)
    applyModule concatMapStringsSep concatStrings configOf conflictMsg count dischargeDef
    evalLevel evalLevel1G evalLevelG evalModulesWith filterAttrs fix groupDefs
    hasUnconditional id isPlainDef isProp last mergeElemDefs mergeFinal mergeWith mkIf
    moduleKeys noDefs normalizeApplied normalizeModule optionalAttrs planOf plannedLevel
    plannedLevelG propTypes showFiles showOption survives toList typeErrorMsg unique
    uniqueStrings unknownOption lib shortcuts;

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

  # The typeMerge of a type made of one element type (nullOr, listOf, attrsOf): the
  # same type of the merged element types, or null if they do not merge.
  elemTypeMerge = name: make: elemType: other:
    if other.name == name then
      (let e = typeMergeOf elemType other.elemType; in if e == null then null else make e)
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
        typeMerge = elemTypeMerge "nullOr" nullOr elemType;
      } // optionalAttrs (shortcuts && elemType ? mergeOne) {
        mergeOne = declFile: loc: file: v: if v == null then null else elemType.mergeOne declFile loc file v;
      };

    listOf = elemType:
      let
        scalar = elemType.isScalar or false;
        # elements passing a check of this scalar type cannot be mkIf & co.
        plainCheck = shortcuts && scalar && !(elemType.check (mkIf true null));
        merge' = if !shortcuts then general else declFile: loc: defs:
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
          else general declFile loc defs;
        # every definition's elements, each merged on its own
        general = declFile: loc: defs:
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
              (if shortcuts && scalar then it.value else elemMerge (loc ++ [ "[${toString i}]" ]) [ it ])
            else throw (typeErrorMsg (loc ++ [ "[${toString i}]" ]) elemType it)) (length items);
      in
      mkOptionType ({
        name = "listOf";
        description = "list of ${phrase (c: c == "noun" || c == "composite") elemType}";
        descriptionClass = "composite";
        check = x: isList x && (all elemType.check x || all (e: elemType.check e || isProp e) x);
        inherit merge' elemType;
        merge = merge' "<unknown-file>";
        typeMerge = elemTypeMerge "listOf" listOf elemType;
      } // optionalAttrs plainCheck {
        # a plain list of values of this scalar element type is its own merge
        plainElemCheck = elemType.check;
      } // optionalAttrs (shortcuts && !scalar && elemType ? mergeOne) {
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
            simple = shortcuts && tail defs != [ ] && length allVals == length vals && !(elem { } vals)
              && catAttrs "_type" (filter isAttrs allVals) == [ ];
            grouped =
              if shortcuts && tail defs == [ ] then
                (let d = head defs; in mapAttrs (_: v: [ { inherit (d) file; value = v; } ]) d.value)
              else zipAttrsWith (_: vs: vs) (map (d: mapAttrs (_: v: { inherit (d) file; value = v; }) d.value) defs);
            uncond = ds: any (d: hasUnconditional d.value) ds;
            kept =
              if shortcuts && all (n: uncond grouped.${n}) (attrNames grouped) then grouped
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
            if shortcuts && all isPlainDef ds then
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
        typeMerge = elemTypeMerge "attrsOf" attrsOf elemType;
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
        # the function module's result for the element at `loc`
        resultD = loc: config: options: dInfo.module (
          if dInfo.onlyConfig then { inherit config; }
          else intersectAttrs dInfo.fa ({ inherit lib config options; name = last loc; } // specialArgs));
        mergeD = declFile: loc: defs:
          let
            r = resultD loc config options;
            ctx = { files = uniqueStrings (map (d: d.file) defs); inherit config; };
            config = evalLevel1G ctx loc declFile r.options (groupDefs loc defs);
            options = (evalLevel ctx loc [ { file = declFile; value = r.options; } ] defs).options;
          in
          if onlyOptions r then config else general declFile loc defs;
        mergeSD = declFile: loc: defs:
          let
            r = resultD loc config options;
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
        merge' = if !shortcuts then generic else declFile: loc: defs:
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
        inherit merge';
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
      } // optionalAttrs shortcuts { inherit mergeOne; };

    submodule = modules: submoduleWith {
      shorthandOnlyDefinesConfig = true;
      modules = toList modules;
    };
  };
in
{
  inherit mergeEqualOption mergeOneOption mergeDefaultOption phrase typeMergeOf mkOptionType
    mkScalar intBetween separatedString types;
}
