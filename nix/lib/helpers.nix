# Part of carrier's module system (see modules.nix, assembled by
# module-system.nix): nixpkgs-like list, string and attribute helpers, and how
# options, files and values are shown in messages.
self:
let
  inherit (builtins)
    attrNames isAttrs isList isString concatMap filter foldl' length head tail elem
    elemAt genList listToAttrs concatStringsSep toJSON typeOf zipAttrsWith substring
    stringLength replaceStrings match genericClosure split;
  inherit (self)
    propTypes;

  id = x: x;
  const = x: _: x;
  flip = f: a: c: f c a;
  fix = f: let x = f x; in x;
  min = x: y: if x < y then x else y;
  max = x: y: if x > y then x else y;
  mod = base: int: base - (int * (builtins.div base int));
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
  warn = msg: builtins.trace "warning: ${msg}";
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

in
{
  inherit id const flip fix min max mod isNull optional optionals optionalAttrs
    optionalString toList last init take drop sublist flatten range imap0 imap1 count foldr
    foldl reverseList findFirst unique uniqueStrings intersectLists subtractLists
    nameValuePair genAttrs mapAttrs' mapAttrsToList filterAttrs zipAttrs attrByPath
    hasAttrByPath getAttrFromPath setAttrByPath recursiveUpdateUntil recursiveUpdate
    hasPrefix hasSuffix removePrefix removeSuffix concatStrings concatMapStrings
    concatMapStringsSep stringToCharacters escapeRegex splitString lowerChars upperChars
    toUpper toLower boolToString mapNullable assertMsg throwIf throwIfNot warn
    literalExpression literalMD mdDoc joinAnd showFiles showOptionPart showOption
    showValueAt showValue;
}
