# Part of carrier's module system (see modules.nix, assembled by
# module-system.nix): mkIf, mkMerge, mkOverride and mkOrder; which definitions
# of an option count (conditions, priorities, order); type-checked merging and
# the messages of failed checks.
self:
let
  inherit (builtins)
    isAttrs isInt isBool mapAttrs concatMap filter foldl' head tail all any sort;
  inherit (self)
    joinAnd min showFiles showOption showValue shortcuts;

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
  # (The switch is read once, not per call: these functions are hot.)
  finalizeDefs = if !shortcuts then finalizeAll else declFile: opt: defs:
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
  mergeFinal = if !shortcuts then mergeChecked else type: declFile: loc: final:
    if tail final == [ ] then
      (let d = head final; in
       if type.check d.value then
         (if type.isScalar or false then d.value
          else if type ? merge' then type.merge' declFile loc final
          else type.merge loc final)
       else throw (typeErrorMsg loc type d))
    else mergeChecked type declFile loc final;

  mergeChecked = type: declFile: loc: final:
    if all (d: type.check d.value) final then
      (if type ? merge' then type.merge' declFile loc final else type.merge loc final)
    else throw (typeErrorMsg loc type (head (filter (d: !(type.check d.value)) final)));

  noCtx = { files = [ ]; config = throw "carrier: internal error: no configuration"; };

  # Full merge of the raw definitions of an element (attrsOf value, list entry).
  mergeElemDefs = type: declFile: loc: defs:
    let final = finalizeDefs declFile { } defs; in
    if final == [ ] then throw (notDefinedMsg noCtx loc)
    else mergeFinal type declFile loc final;

in
{
  inherit propTypes isProp mkIf mkMerge mkOverride defaultOverridePriority mkOptionDefault
    mkDefault mkImageMediaOverride mkForce mkVMOverride mkOrder defaultOrderPriority
    mkBefore mkAfter checkCondition dischargeDef hasUnconditional survives hasTopOverride
    pushDownWith keepBad isPlainDef unwrapDef finalizeDefs finalizeAll notDefinedMsg
    typeErrorMsg conflictMsg mergeWith mergeFinal noCtx mergeElemDefs;
}
