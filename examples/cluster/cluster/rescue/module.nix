# A NixOS rescue system that exists only as a netboot image (carried as
# pxe-server#rescue); not deployable on its own.
{
  cluster.rescue = {
    spin = "nixos";

    host = {
      name = "rescue";
      domain = "example.org";
      target = null;
    };

    netboot = {
      enable = true;
      macs = [ "52:54:00:12:34:99" ];
    };

    labels.role = "rescue";
    tags = [ "rescue" ];
  };
}
