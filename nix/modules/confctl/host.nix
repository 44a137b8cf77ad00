# The machine's host name and domain from its metadata (cluster.<name>.host), as
# defaults, as upstream's host.nix does.
{ lib, confMachine, ... }:
let
  host = confMachine.host or null;
in
{
  networking.hostName = lib.mkIf (host != null && host ? name && host.name != null) (lib.mkDefault host.name);
  networking.domain = lib.mkIf (host != null && host ? fullDomain && host.fullDomain != null) (lib.mkDefault host.fullDomain);
}
