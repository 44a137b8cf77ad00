# A standalone backup server in another location, kept longer.
{ config, lib, ... }:
{
  cluster.backup = {
    spin = "nixos";

    host = {
      name = "backup";
      location = "brq";
      domain = "example.org";
    };

    addresses.v4 = [ { address = "198.51.100.40"; prefix = 24; } ];

    labels = {
      role = "backup";
      dc = "brq";
    };
    tags = [ "backup" "brq" ];

    buildGenerations = { min = 3; max = 10; };
    hostGenerations = {
      min = 10;
      max = 60;
      maxAge = 365 * 24 * 60 * 60;
    };
  };
}
