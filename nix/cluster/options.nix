# Option declarations of `cluster.<name>`: the machine inventory.
#
# Names, types and defaults follow upstream confctl's nix/modules/cluster
# (spec section 1.1 and 1.2). Deliberate differences, all on purpose:
#   * carrier.machines.*.alias has `default = null` (upstream declares no
#     default, so every entry had to set it; spec 8.3 quirk 1).
#   * host.fqdn is derived when `name` is set even without `domain`
#     (name[.location][.domain], spec 1.1); upstream needed both.
#   * host.port (int, 22) exists (spec 1.1).
#   * `addresses` is a set of options {primary, v4, v6} (always present),
#     not upstream's `null or submodule` defaulting to null; `string` of an
#     address is `null or str`.
# Kept from upstream: `managed` has `default = null` and an `apply` that turns
# null into true for the nixos/vpsadminos spins and false otherwise, so the
# evaluated value is always a boolean; host.fullDomain / host.fqdn are
# computed by `apply` (so an explicit null is also derived).
#
# Every module here is an attribute set built once, so that carrier's module
# system evaluates it once for all machines (and shares the defaults, see
# `_pureDefaults` in nix/lib/modules.nix). The few option attributes that
# need the machine's (or the host's, or the address's) own config are given by
# `lib.withConfig`, which is what a `{ config, ... }:` module declaring them
# would be.
{ lib, ... }:
let
  inherit (lib) mkOption mkEnableOption types optional concatStringsSep elem head withConfig;

  # Types are built once.
  nullOrStr = types.nullOr types.str;
  nullOrBool = types.nullOr types.bool;
  nullOrInt = types.nullOr types.int;
  listOfStr = types.listOf types.str;

  nullOrIntOption = description: mkOption {
    type = nullOrInt;
    default = null;
    inherit description;
  };

  generations = what: {
    min = nullOrIntOption "The minimum number of ${what} generations to be kept.";
    max = nullOrIntOption "The maximum number of ${what} generations to be kept.";
    maxAge = nullOrIntOption "Delete ${what} generations older than this many seconds.";
  };

  toplevelAttribute = [ "system" "build" "toplevel" ];

  buildAttributeOption = mkOption {
    type = listOfStr;
    default = toplevelAttribute;
    description = ''
      Path to the attribute in the machine's system config that is built,
      e.g. [ "system" "build" "toplevel" ] selects config.system.build.toplevel.
    '';
  };

  # ------------------------------------------------------------ addresses
  addressOptions = v: {
    address = mkOption {
      type = types.str;
      description = "IPv${toString v} address";
    };
    prefix = mkOption {
      type = types.ints.positive;
      description = "Prefix length";
    };
  };
  addressModule = v: {
    _pureDefaults = true;
    options = addressOptions v // {
      string = mkOption {
        type = nullOrStr;
        description = "Address with prefix as string";
      } // withConfig (config: { default = "${config.address}/${toString config.prefix}"; });
    };
  };
  address4 = types.submodule (addressModule 4);
  address6 = types.submodule (addressModule 6);
  nullOrAddress4 = types.nullOr address4;

  addressesV4 = mkOption {
    type = types.listOf address4;
    default = [ ];
    description = "IPv4 addresses this machine responds to";
  };
  addressesV6 = mkOption {
    type = types.listOf address6;
    default = [ ];
    description = "IPv6 addresses this machine responds to";
  };

  # `addresses` is a set of options (per the carrier spec, and what carrier's
  # Rust model reads), not upstream's `null or submodule` with default null;
  # the default of `primary` needs the machine's config.
  addressesOptions = {
    primary = mkOption {
      type = nullOrAddress4;
      description = ''
        Default address other machines should use to connect to this
        machine. Defaults to the first IPv4 address, else the first IPv6
        address, else null.
      '';
    } // withConfig (config: {
      default =
        if config.addresses.v4 != [ ] then head config.addresses.v4
        else if config.addresses.v6 != [ ] then head config.addresses.v6
        else null;
    });
    v4 = addressesV4;
    v6 = addressesV6;
  };

  # ------------------------------------------------------------ host
  staticHostOptions = {
    name = mkOption {
      type = nullOrStr;
      default = null;
      description = "Host name";
    };
    location = mkOption {
      type = nullOrStr;
      default = null;
      description = "Host location domain";
    };
    domain = mkOption {
      type = nullOrStr;
      default = null;
      description = "Host domain";
    };
    port = mkOption {
      type = types.int;
      default = 22;
      description = "SSH port";
    };
  };

  hostModule = {
    _pureDefaults = true;
    options = staticHostOptions // {
      fullDomain = mkOption {
        type = nullOrStr;
        default = null;
        description = "Domain including location, i.e. the FQDN without the host name";
      } // withConfig (config: {
        apply = v:
          if v == null && config.domain != null then
            concatStringsSep "." (optional (config.location != null) config.location ++ [ config.domain ])
          else v;
      });
      fqdn = mkOption {
        type = nullOrStr;
        default = null;
        description = "Host FQDN, by default name[.location][.domain]";
      } // withConfig (config: {
        apply = v:
          if v == null && config.name != null then
            concatStringsSep "." (
              [ config.name ]
              ++ optional (config.location != null) config.location
              ++ optional (config.domain != null) config.domain)
          else v;
      });
      target = mkOption {
        type = nullOrStr;
        description = ''
          Address/host to which the configuration is deployed. null means the
          machine is not deployable; "localhost" deploys locally.
        '';
      } // withConfig (config: { default = config.fqdn; });
    };
  };

  # ------------------------------------------------------------ swpins (legacy)
  gitSpec = {
    _pureDefaults = true;
    options = {
      url = mkOption {
        type = types.str;
        description = "URL of the git repository";
      };
      fetchSubmodules = mkOption {
        type = types.bool;
        default = false;
        description = "Fetch git submodules";
      };
      update = {
        ref = mkOption {
          type = nullOrStr;
          default = null;
          description = "Implicit git reference to use for both manual and automatic updates";
        };
        auto = mkOption {
          type = types.bool;
          default = false;
          description = "Automatically update the pin to `ref` before building";
        };
        interval = mkOption {
          type = types.int;
          default = 60 * 60;
          description = "Seconds from the last update to the next auto-update";
        };
      };
    };
  };
  swpinSpec = {
    _pureDefaults = true;
    options = {
      type = mkOption {
        type = types.enum [ "git" "git-rev" ];
        default = "git";
      };
      git = mkOption {
        type = types.nullOr (types.submodule gitSpec);
        default = null;
      };
      git-rev = mkOption {
        type = types.nullOr (types.submodule gitSpec);
        default = null;
      };
    };
  };

  # ------------------------------------------------------------ carried machines
  carriedMachine = {
    _pureDefaults = true;
    options = {
      machine = mkOption {
        type = types.str;
        description = "Name of the carried machine (a cluster.<name> entry)";
      };
      alias = mkOption {
        type = nullOrStr;
        default = null;
        description = "Alternative name used after the '#' and in the carrier profile name";
      };
      labels = mkOption {
        type = types.attrs;
        default = { };
        description = "Labels merged over the source machine's labels";
      };
      tags = mkOption {
        type = listOfStr;
        default = [ ];
        description = "Tags appended to the source machine's tags";
      };
      extraModules = mkOption {
        type = types.listOf types.path;
        default = [ ];
        description = "Extra modules imported only when building this carried variant";
      };
      buildAttribute = buildAttributeOption;
      buildGenerations = generations "build";
      hostGenerations = generations "host";
    };
  };

  # ------------------------------------------------------------ health checks
  # How long a check is retried, and how often (both kinds of check).
  checkTiming = {
    timeout = mkOption {
      type = types.ints.unsigned;
      default = 60;
      description = "Max number of seconds to wait for the check to pass";
    };
    cooldown = mkOption {
      type = types.ints.unsigned;
      default = 3;
      description = "Number of seconds in between check attempts";
    };
  };

  systemdProperty = {
    _pureDefaults = true;
    options = {
      property = mkOption {
        type = types.str;
        description = "systemd property name";
      };
      value = mkOption {
        type = types.str;
        description = "value to be checked";
      };
    } // checkTiming;
  };

  outputCheck = what: {
    match = mkOption {
      type = nullOrStr;
      default = null;
      description = "Standard ${what} must match this string";
    };
    include = mkOption {
      type = listOfStr;
      default = [ ];
      description = "Strings that must be included in standard ${what}";
    };
    exclude = mkOption {
      type = listOfStr;
      default = [ ];
      description = "Strings that must not be included in standard ${what}";
    };
  };

  checkCommand = {
    _pureDefaults = true;
    options = {
      description = mkOption {
        type = types.str;
        default = "";
        description = "Command description";
      };
      command = mkOption {
        type = listOfStr;
        description = "Command and its arguments; {attr.path} is replaced by the machine attribute";
      };
      exitStatus = mkOption {
        type = types.ints.unsigned;
        default = 0;
        description = "Expected exit status";
      };
      standardOutput = outputCheck "output";
      standardError = outputCheck "error";
    } // checkTiming;
  };

  # ------------------------------------------------------------ the machine
  staticMachineOptions = {
    spin = mkOption {
      type = types.enum [ "openvz" "nixos" "vpsadminos" "other" ];
      description = "OS type";
    };

    swpins = {
      channels = mkOption {
        type = listOfStr;
        default = [ ];
        description = "Swpin channels used by this machine (legacy mode)";
      };
      pins = mkOption {
        type = types.attrsOf (types.submodule swpinSpec);
        default = { };
        description = "Swpins supplementing or overriding the channels (legacy mode)";
      };
    };

    inputs = {
      channels = mkOption {
        type = listOfStr;
        default = [ ];
        description = "Input channels used by this machine (flake mode); later ones override earlier ones";
      };
      overrides = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Role -> flake input name, applied on top of the channels";
      };
    };

    netboot = {
      enable = mkEnableOption "Include this system on pxe servers";
      macs = mkOption {
        type = listOfStr;
        default = [ ];
        description = "MAC addresses for PXE auto-detection";
      };
    };

    buildAttribute = buildAttributeOption;

    carrier = {
      enable = mkEnableOption "This machine is a carrier for other machines";
      machines = mkOption {
        type = types.listOf (types.submodule carriedMachine);
        default = [ ];
        description = "Carried machines";
      };
    };

    host = mkOption {
      type = types.nullOr (types.submodule hostModule);
      default = null;
      description = "How to reach the machine";
    };

    labels = mkOption {
      type = types.attrs;
      default = { };
      description = "User-defined labels";
    };

    tags = mkOption {
      type = listOfStr;
      default = [ ];
      description = "User-defined tags";
    };

    nix.nixPath = mkOption {
      type = listOfStr;
      default = [ ];
      description = "Extra NIX_PATH entries (name=path)";
    };

    buildGenerations = generations "build";

    hostGenerations = generations "host" // {
      collectGarbage = mkOption {
        type = nullOrBool;
        default = null;
        description = "Run nix-collect-garbage (not read by confctl, spec 8.3 quirk 18)";
      };
    };

    autoRollback = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Use the auto-rollback wrapper for switch and test";
      };
      timeout = mkOption {
        type = types.ints.unsigned;
        default = 60;
        description = "Seconds the target waits for the confirmation before rolling back";
      };
    };

    healthChecks = {
      systemd = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Enable systemd checks (NixOS spin only)";
        };
        systemProperties = mkOption {
          type = types.listOf (types.submodule systemdProperty);
          default = [ { property = "SystemState"; value = "running"; } ];
          description = "systemd manager properties checked with systemctl show";
        };
        unitProperties = mkOption {
          type = types.attrsOf (types.listOf (types.submodule systemdProperty));
          default = { };
          description = "Unit name or pattern -> properties checked with systemctl show <unit>";
        };
      };
      builderCommands = mkOption {
        type = types.listOf (types.submodule checkCommand);
        default = [ ];
        description = "Check commands run on the build machine";
      };
      machineCommands = mkOption {
        type = types.listOf (types.submodule checkCommand);
        default = [ ];
        description = "Check commands run on the target machine";
      };
    };
  };

  machineModule = {
    _pureDefaults = true;
    options = staticMachineOptions // {
      addresses = addressesOptions;

      managed = mkOption {
        type = nullOrBool;
        default = null;
        description = ''
          Whether the machine is managed by carrier. null (the default) means
          true for the nixos and vpsadminos spins and false otherwise.
        '';
      } // withConfig (config: {
        apply = v:
          if v != null then v
          else elem config.spin [ "nixos" "vpsadminos" ];
      });
    };
  };
in
{
  options.cluster = mkOption {
    type = types.attrsOf (types.submodule machineModule);
    default = { };
    description = "The machines of the cluster";
  };
}
