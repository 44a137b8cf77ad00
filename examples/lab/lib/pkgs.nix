# The lab's `pkgs`: what the configurations and carrier's modules take from
# nixpkgs, built with Debian's static busybox (see system.nix). Same names and
# arguments as nixpkgs'; results are as close as the lab needs.
{ system ? builtins.currentSystem }:
let
  b = builtins;

  # A derivation built by `busybox sh -euc <script>`.
  bbDrv = name: script: attrs: derivation ({
    inherit name;
    inherit system;
    builder = "/bin/busybox";
    args = [ "sh" "-euc" script ];
    PATH = "/bin-not-set";
  } // attrs);

  # Scripts written by users (postBuild, ...) call plain `ln`, `cp`: busybox's
  # applets as a PATH.
  withApplets = ''
    /bin/busybox mkdir -p "$TMPDIR/applets"
    /bin/busybox --install -s "$TMPDIR/applets"
    export PATH="$TMPDIR/applets"
  '';

  writeTextFile = { name, text, executable ? false, destination ? "" }:
    bbDrv name ''
      f="$out${destination}"
      /bin/busybox mkdir -p "$(/bin/busybox dirname "$f")"
      printf '%s' "$text" > "$f"
      ${if executable then ''/bin/busybox chmod 755 "$f"'' else ""}
    '' { inherit text; };

  runtimeShell = "/bin/busybox sh";

  # A package whose files are links to this host's own files (the lab hosts run
  # on the machine that builds): Debian's atftpd, syslinux, ...
  hostFiles = name: links:
    bbDrv name (b.concatStringsSep "\n" (map (l: ''
      /bin/busybox mkdir -p "$(/bin/busybox dirname "$out/${l.at}")"
      /bin/busybox ln -s ${l.to} "$out/${l.at}"
    '') links)) { };
in
rec {
  inherit bbDrv runtimeShell writeTextFile;

  writeText = name: text: writeTextFile { inherit name text; };
  writeScript = name: text: writeTextFile { inherit name text; executable = true; };
  writeShellScript = name: text: writeScript name "#!${runtimeShell}\n${text}";
  writeShellScriptBin = name: text: writeTextFile {
    inherit name;
    text = "#!${runtimeShell}\n${text}";
    executable = true;
    destination = "/bin/${name}";
  };

  # Every file of every path linked into $out (later paths do not replace
  # earlier ones), then postBuild, as nixpkgs' symlinkJoin.
  symlinkJoin = { name, paths, postBuild ? "", ... }:
    bbDrv name ''
      ${withApplets}
      mkdir -p $out
      for p in $paths; do
        (cd "$p" && find . ! -type d) | while read -r f; do
          mkdir -p "$(dirname "$out/$f")"
          [ -e "$out/$f" ] || [ -L "$out/$f" ] || ln -s "$p/$f" "$out/$f"
        done
      done
      ${postBuild}
    '' { paths = map toString paths; };

  # `carrier` on the lab host's PATH (the binary that started the lab).
  carrier = writeShellScriptBin "carrier" ''exec carrier "$@"'';
  atftp = hostFiles "atftp" [ { at = "bin/atftpd"; to = "/usr/sbin/atftpd"; } ];
  kexec-tools = hostFiles "kexec-tools" [ { at = "bin/kexec"; to = "/sbin/kexec"; } ];
  syslinux = hostFiles "syslinux" (
    [ { at = "share/syslinux/pxelinux.0"; to = "/usr/lib/PXELINUX/pxelinux.0"; }
      { at = "share/syslinux/memdisk"; to = "/usr/lib/syslinux/memdisk"; } ]
    ++ map (m: { at = "share/syslinux/${m}"; to = "/usr/lib/syslinux/modules/bios/${m}"; })
      [ "ldlinux.c32" "menu.c32" "libutil.c32" "libcom32.c32" "reboot.c32" ]);
  memtest86plus = writeTextFile { name = "memtest86plus"; text = "lab stand-in for memtest86+\n"; destination = "/memtest.bin"; };
}
