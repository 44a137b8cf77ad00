# The lab's stand-ins as one flake, for flake-mode configurations (the flake
# input a configuration names for its nixpkgs and vpsadminos roles; its root is
# both stand-ins' root, as nix.nixPath and `-I` entries see it):
#   lib.nixosSystem { modules; specialArgs; system; }             (nixpkgs' name)
#   lib.vpsadminosSystem { modules; specialArgs; system; pkgs; }  -> { eval; pkgs; } (vpsAdminOS')
#   legacyPackages.<system>                                        (pkgs.nix)
# The systems are evaluated by carrier's module system, taken from the input
# `carrier`: a configuration makes it follow its own carrier input
# (`inputs.<this input>.inputs.carrier.follows = "confctl";`), so the URL
# below is never fetched.
{
  inputs.carrier.url = "path:/nonexistent/carrier";

  outputs = { self, carrier }:
    let
      lib = carrier.lib.modules;
      pkgsFor = system: import ./pkgs.nix { inherit system; };
    in
    {
      lib = lib // {
        nixosSystem = { modules ? [ ], specialArgs ? { }, system, ... }:
          import ./nixos/lib/eval-config.nix { inherit modules specialArgs system lib; };
        vpsadminosSystem = { modules ? [ ], specialArgs ? { }, system, ... }: {
          eval = import ./os/default.nix { extraModules = modules; inherit specialArgs system lib; };
          pkgs = pkgsFor system;
        };
      };
      legacyPackages.x86_64-linux = pkgsFor "x86_64-linux";
    };
}
