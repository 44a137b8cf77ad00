# Part of carrier's module system (see modules.nix, assembled by
# module-system.nix): mkOption and withConfig, shared defaults, and the
# evaluation of a tree of option declarations with its definitions (config and
# options), including the planned trees of submodules.
self:
let
  inherit (builtins)
    attrNames isAttrs isList mapAttrs concatMap filter foldl' head tail listToAttrs all
    any removeAttrs zipAttrsWith intersectAttrs;
  inherit (self)
    finalizeDefs hasTopOverride id keepBad mergeFinal mergeWith mkOptionType nameValuePair
    notDefinedMsg optionalAttrs pushDownWith showFiles showOption showValue typeMergeOf
    types uniqueStrings unwrapDef shortcuts;

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
    if shortcuts && tail ds == [ ] then
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
      (if shortcuts && all (d: let v = d.value; in isAttrs v && !(v ? _type)) defs then
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
          if shortcuts && memo != null && memo.ok && memo.default == opt.default && memo.type == type then memo.value
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
  # (The shortcut switch is read once, not per call, in the hot functions.)
  groupDefs = if !shortcuts then pushDownGroup else loc: defs:
    if defs == [ ] then noDefs
    else if tail defs == [ ] && isAttrs (head defs).value && !((head defs).value ? _type) then
      { one = true; oneFile = (head defs).file; dv = (head defs).value; }
    else pushDownGroup loc defs;

  pushDownGroup = loc: defs:
    if defs == [ ] then noDefs
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
        else if o._type or null == "option" then undefinedValue ctx (loc ++ [ n ]) file o
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
              (if o._type or null == "option" then definedValue ctx (loc ++ [ n ]) file o g g.dv.${n}
               else evalLevel1 ctx (loc ++ [ n ]) { inherit file; value = o; } (if g.one then [ { file = g.oneFile; value = g.dv.${n}; } ] else g.dv.${n}))
            else if o._type or null == "option" then undefinedValue ctx (loc ++ [ n ]) file o
            else defaultsTree ctx (loc ++ [ n ]) file o) tree;

  unwrapIf = v: if isAttrs v && v ? _type then unwrapDef v else v;

  # The list of { file, value } of `dn`, an entry of grouped definitions `g`.
  defsOfGrouped = g: dn: if g.one then [ { file = g.oneFile; value = dn; } ] else dn;

  # The value of option `o` (at `loc`, declared in `file`) defined by `dn`, its
  # entry in the grouped definitions `g` (see groupDefs: the value itself when
  # `g.one`, else its list of { file, value }). One definition, plain or one
  # mkIf (true) or high-priority mkOverride around a plain value, takes the
  # direct route when it is a list of plain values of a scalar type or is
  # well-typed; anything else optionValue.
  definedValue = if !shortcuts then (ctx: loc: file: o: g: dn: optionValue ctx loc file o (defsOfGrouped g dn))
    else ctx: loc: file: o: g: dn:
    if o ? apply || !(g.one || tail dn == [ ]) then optionValue ctx loc file o (defsOfGrouped g dn)
    else
      let
        v = if g.one then (if isAttrs dn && dn ? _type then unwrapDef dn else dn) else unwrapIf (head dn).value;
        t = o.type or types.unspecified;
      in
      if t.lazyKeys or false || isAttrs v && v ? _type then optionValue ctx loc file o (defsOfGrouped g dn)
      else if t ? plainElemCheck && isList v && all t.plainElemCheck v then v
      else if t.check v then
        (if t.isScalar or false then v
         else if t ? merge' then t.merge' file loc [ { file = if g.one then g.oneFile else (head dn).file; value = v; } ]
         else t.merge loc [ { file = if g.one then g.oneFile else (head dn).file; value = v; } ])
      else optionValue ctx loc file o (defsOfGrouped g dn);

  # The value of option `o` nobody defines: its merged default, shared when
  # memoized (see defaultMemoOf).
  undefinedValue = if !shortcuts then defaultValue else ctx: loc: file: o:
    let m = o._defaultMemo or null; in
    if m != null && (!(o ? apply) || o ? default) && m.ok && m.default == o.default && m.type == (o.type or types.unspecified)
    then (if o ? apply then o.apply m.value else m.value)
    else if m == null && o ? default then defaultNoMemo ctx loc file o
    else defaultValue ctx loc file o;

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
      undefinedValue ctx loc file (o0 // w);

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
        let o = o0; in if o._type or null == "option" then undefinedValue ctx (loc ++ [ n ]) file o
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
        if o._type or null == "option" then definedValue ctx (loc ++ [ n ]) file o g dn
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
  configOf = if !shortcuts then (ctx: loc: decls: defs: g: (evalLevelG ctx loc decls g).config)
    else ctx: loc: decls: defs: g:
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
      single = shortcuts && tail decls == [ ];
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
          (if hasDefs n then definedValue ctx (loc ++ [ n ]) singleFile o g defsByName.${n}
           else undefinedValue ctx (loc ++ [ n ]) singleFile o)
        else if single && !(hasDefs n) then defaultsTree ctx (loc ++ [ n ]) singleFile o
        else
          let ds = declsOf n o; kind = kindOf n ds; in
          if kind == "option" then singleOptionValue n (head ds).file (head ds).value
          else if kind == "options" then
            (let decl = mergeDecls (loc ++ [ n ]) ds; in
             if hasDefs n then optionValue ctx (loc ++ [ n ]) decl.file decl.option (defsOf n)
             else defaultValue ctx (loc ++ [ n ]) decl.file decl.option)
          else if shortcuts && tail ds == [ ] then evalLevel1 ctx (loc ++ [ n ]) (head ds) (defsOf n)
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
in
{
  inherit isOption defaultMemoOf mkOption mkEnableOption mkSinkUndeclaredOptions withConfig
    isWcOption withConfigOf withConfigOf' mergeDecls optionFinal optionValue defaultNoMemo
    defaultValue optionInfo groupByName levelBad badDeclMsg groupDefs noDefs unknownOption
    defaultsTree planOf evalLevel1 evalLevel1G unwrapIf undefinedWithConfig plannedLevel
    plannedLevelG disjointTrees configOf evalLevel evalLevelG;
}
