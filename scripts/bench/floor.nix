# The floor of `carrier ls` benchmarks: the same module files read by a bare
# `nix-instantiate --eval`, without any module system. `lib` holds identity stubs
# for the helpers the generated modules call, and `config` is the naive union of
# their definitions (no priorities, no merging, no types, no defaults).
{ moduleFiles }:
let
  b = builtins;
  files = import moduleFiles;
  lib = {
    optional = c: x: if c then [ x ] else [ ];
    mod = x: y: x - (x / y) * y;
    mkDefault = x: x;
    mkIf = c: x: if c then x else null;
  };
  modules = map (f: import f { inherit config lib; }) files;
  config.cluster = b.listToAttrs (b.concatMap
    (m: map (name: { inherit name; value = m.cluster.${name}; }) (b.attrNames m.cluster))
    modules);
in
config.cluster
