# machine.json of a carried artifact (spec 1.5): what the carrier's netboot
# server and `carrier status` read. Written by the configuration (as in
# upstream's tests and vpsfree-cz-configuration's pxe-only.nix), not by carrier.
{ config, confMachine }:
builtins.toJSON {
  machine = confMachine.name;
  marker = config.confctl.marker;
  spin = config.system.spin;
  label = "${confMachine.name} (lab, marker ${config.confctl.marker})";
  fqdn = confMachine.host.fqdn or confMachine.name;
  toplevel = "${config.system.build.toplevel}";
  macs = config.lab.macs;
  kernelParams = config.boot.kernelParams;
}
