#!/usr/bin/env bash
# The baseline of scripts/bench-status: the reads of `carrier status` done the way
# upstream's status does them, one ssh process per command: one job per machine (all
# at once, as upstream's thread per machine), each running its commands in turn.
#   status-plain.sh <plan.tsv> <ssh_config>
# plan.tsv: kind (standalone|carried) <TAB> host <TAB> profile
set -uo pipefail
plan=$1
cfg=$2
ssh_() { ssh -F "$cfg" "$@" </dev/null 2>/dev/null; }

standalone() {
  local host=$1
  ssh_ "$host" cat /proc/uptime
  ssh_ "$host" readlink -f /run/current-system
  ssh_ "$host" readlink -f /run/booted-system
  ssh_ "$host" readlink -f /nix/var/nix/profiles/system
  ssh_ "$host" stat -c %Y /nix/var/nix/profiles/system
  ssh_ "$host" cat /run/current-system/etc/confctl/inputs-info.json
  ssh_ "$host" cat /run/current-system/etc/confctl/swpins-info.json
}

# spec 4.5: through the carrier, its uptime, the profile, its generations, machine.json
carried() {
  local host=$1 profile=$2
  ssh_ "$host" cat /proc/uptime
  ssh_ "$host" readlink -f "$profile"
  ssh_ "$host" ls /nix/var/nix/profiles
  ssh_ "$host" cat "$profile/machine.json"
}

while IFS=$'\t' read -r kind host profile; do
  if [ "$kind" = standalone ]; then
    standalone "$host" >/dev/null &
  else
    carried "$host" "$profile" >/dev/null &
  fi
done < "$plan"
wait
