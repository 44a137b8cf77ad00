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
# general path (module-system.nix's `shortcuts = false` turns them all off;
# core/tests/shortcuts.rs evaluates the fixtures and examples both ways):
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
#     plain attribute set (mergeOne) take direct routes (definedValue,
#     undefinedValue, mergeOne); so do the common
#     shapes of submodule types (one attribute-set module, one function
#     module, or one of each declaring disjoint options) and attrsOf values
#     defined one name per module (e.g. one machine per file).
#
# All errors are thrown with messages starting with "carrier: ".
#
# The parts (helpers, definitions, types, options, evaluation) are listed in
# module-system.nix.
import ./module-system.nix { shortcuts = true; }
