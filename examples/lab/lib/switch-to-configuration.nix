# bin/switch-to-configuration of a lab system: the activation protocol of a
# NixOS toplevel without systemd. `@out@` is replaced by the toplevel's own
# path when it is built. It runs on the lab's sshd "hosts" (this machine, each
# with its own /run), so it calls /bin/busybox explicitly rather than trusting
# PATH.
#
#   switch | test    /run/current-system -> toplevel, and "<action> <toplevel>"
#                    appended to /run/carrier-activations.log
#   boot             only the log line (the system profile is set by the deployer)
#   dry-activate     prints "would activate <toplevel>", changes nothing
#   anything else    exit 1
# With lab.failActivation every valid action prints an error and exits 1 before
# changing anything (a failing activation for the deploy and rollback tests).
# With lab.dropDeployer, switch and test end by closing the SSH connection they run
# under (as a new system with broken networking would): the deployer cannot confirm.
# With lab.hangActivation, switch and test hang (sleep 3600) after switching, as an
# activation stuck on a service would.
{ failActivation, dropDeployer, hangActivation ? false }:
''
  #!/bin/busybox sh
  set -eu
  bb=/bin/busybox
  toplevel=@out@
  action="''${1:-}"
  case "$action" in
    switch|test|boot|dry-activate) ;;
    *) echo "switch-to-configuration: unknown action '$action' (expected switch, boot, test or dry-activate)" >&2; exit 1 ;;
  esac
  ${if failActivation then ''
  echo "switch-to-configuration: activation of $toplevel failed (lab.failActivation is set)" >&2
  exit 1
  '' else ""}
  case "$action" in
    dry-activate)
      echo "would activate $toplevel"
      ;;
    switch|test)
      $bb ln -sfn "$toplevel" /run/current-system${if hangActivation then "; $bb sleep 3600" else ""}
      echo "$action $toplevel" >> /run/carrier-activations.log
      ${if dropDeployer then ''
      # kill the nearest sshd above us: the deployer's connection
      pid=$$
      while [ "$pid" -gt 1 ]; do
        case "$($bb cat /proc/$pid/comm)" in
          sshd*) $bb kill -9 "$pid"; break ;;
        esac
        pid=$($bb awk '{ print $4 }' /proc/$pid/stat)
      done
      '' else ""}
      ;;
    boot)
      echo "$action $toplevel" >> /run/carrier-activations.log
      ;;
  esac
''
