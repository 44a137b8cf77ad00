# carrier's Nix code as a flake: `lib.mkConfctlOutputs` (flake-mode configurations,
# mk-confctl-outputs.nix) and `lib.modules`, carrier's module system.
{
  description = "carrier: confctl-compatible cluster configurations";

  outputs = { self }: {
    lib = {
      mkConfctlOutputs = import ./mk-confctl-outputs.nix;
      modules = import ./lib/modules.nix;
    };
  };
}
