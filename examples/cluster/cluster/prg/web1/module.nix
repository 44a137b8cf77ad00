# A standalone web server.
{ config, lib, ... }:
{
  cluster."prg/web1" = {
    spin = "nixos";

    host = {
      name = "web1";
      location = "prg";
      domain = "example.org";
    };

    addresses.v4 = [ { address = "192.0.2.31"; prefix = 24; } ];

    labels = {
      role = "web";
      dc = "prg";
      tier = "frontend";
    };
    tags = [ "web" "prg" "public" ];

    healthChecks = {
      systemd.unitProperties."nginx.service" = [
        { property = "ActiveState"; value = "active"; }
      ];
      builderCommands = [
        {
          description = "HTTP answers from the build machine";
          command = [ "curl" "-sf" "-o" "/dev/null" "http://{host.fqdn}/" ];
          timeout = 30;
        }
      ];
    };
  };
}
