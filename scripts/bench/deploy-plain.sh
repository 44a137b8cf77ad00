#!/usr/bin/env bash
# The baseline of scripts/bench-deploy: what a plain script does for the same deploy,
# with the same commands carrier runs, one ssh process per command.
#   deploy-plain.sh <plan.tsv> <ssh_config>
# plan.tsv: kind (standalone|carried) <TAB> host <TAB> store path <TAB> profile
set -euo pipefail
plan=$1
cfg=$2
export NIX_SSHOPTS="-F $cfg"
ssh_() { ssh -F "$cfg" "$@"; }

# status: what each host runs (carrier asks the same before copying)
while IFS=$'\t' read -r kind host path profile; do
  if [ "$kind" = standalone ]; then
    ssh_ "$host" realpath -e /run/current-system >/dev/null 2>&1 || true
  else
    ssh_ "$host" realpath -e "$profile" >/dev/null 2>&1 || true
  fi
done < "$plan"

# copy: standalone hosts first, then carried machines, 5 at a time
cut -f2,3 "$plan" | xargs -P 5 -L 1 sh -c 'nix-copy-closure --to "$0" "$1" 2>/dev/null'

# activate standalone machines one by one, then set every carried profile at once
while IFS=$'\t' read -r kind host path profile; do
  [ "$kind" = standalone ] || continue
  ssh_ "$host" "$path/bin/switch-to-configuration" switch </dev/null
  ssh_ "$host" nix-env -p /nix/var/nix/profiles/system --set "$path" </dev/null 2>/dev/null
done < "$plan"
carried_args=()
carried_paths=()
carrier_host=
while IFS=$'\t' read -r kind host path profile; do
  [ "$kind" = carried ] || continue
  carrier_host=$host
  carried_args+=(-p "$profile")
  carried_paths+=("$path")
done < "$plan"
[ -z "$carrier_host" ] || ssh_ "$carrier_host" carrier profile set "${carried_args[@]}" "${carried_paths[@]}" </dev/null >/dev/null

# health checks: the machines' command check
while IFS=$'\t' read -r kind host path profile; do
  [ "$kind" = standalone ] || continue
  ssh_ "$host" true </dev/null
done < "$plan"
