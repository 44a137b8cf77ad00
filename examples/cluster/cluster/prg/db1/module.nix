# A standalone database server; web1's address is read from its definition.
{ config, lib, ... }:
{
  cluster."prg/db1" = {
    spin = "nixos";

    host = {
      name = "db1";
      location = "prg";
      domain = "example.org";
      port = 2222;
    };

    addresses.v4 = [ { address = "192.0.2.32"; prefix = 24; } ];

    labels = {
      role = "db";
      dc = "prg";
      tier = "backend";
      client = config.cluster."prg/web1".addresses.primary.address;
    };
    tags = [ "db" "prg" ];

    autoRollback.timeout = 120;

    healthChecks.machineCommands = [
      {
        description = "PostgreSQL accepts connections";
        command = [ "pg_isready" "-q" ];
        exitStatus = 0;
        cooldown = 5;
      }
    ];
  };
}
