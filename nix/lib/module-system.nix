# carrier's module system assembled from its parts (what it does: modules.nix,
# which is this with every shortcut on):
#   helpers.nix      list, string and attribute helpers, values in messages;
#   definitions.nix  mkIf & co, the definitions that count, type-checked merging;
#   types.nix        the option types;
#   options.nix      mkOption, evaluation of option trees;
#   evaluation.nix   module collection, evalModules.
# Each part is a function of the whole (`self`): the parts refer to each other's
# names lazily, and every name is bound once, in the part that defines it.
#
# `shortcuts = false` turns every fast path off (see "Performance" in
# modules.nix), so that everything takes the general path. Only a test uses it:
# it evaluates the same modules both ways and expects the same results.
{ shortcuts }:
let
  self = builtins.foldl' (acc: part: acc // import part self) { inherit shortcuts lib; }
    [ ./helpers.nix ./definitions.nix ./types.nix ./options.nix ./evaluation.nix ];

  # The public interface (nixpkgs' lib names).
  lib = with self; {
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
    inherit (builtins)
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

