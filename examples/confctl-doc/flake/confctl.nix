# configs/confctl.nix for flake mode: node1's config.nix imports
# <nixpkgs/nixos/modules/installer/netboot/netboot-minimal.nix>, a search-path
# lookup, so its nixpkgs input goes on the search path (-I) and evaluation is impure,
# as with confctl.
{
  confctl.nix = {
    impureEval = true;
    legacyNixPath = true;
  };
}
