# carrier's auto-rollback script (spec 2.3 step 3.3), copied to a target and run there as
#   sh <this script> -t <timeout> <toplevel> <action> <check_file>
# POSIX sh: targets have no particular shell. The deployer watches <check_file>: it
# waits for "switched", then writes "confirmed" if it can still reach the target. If
# no confirmation arrives within <timeout> seconds (the new system cut the deployer
# off), the previous system is switched back with the same action.
set -u
# The deployer's SSH connection may drop while the new system comes up: keep going
# (without a terminal to hang up or a reader for our output).
trap '' HUP PIPE
timeout=60
if [ "${1:-}" = "-t" ]; then
  timeout="${2:-}"
  shift 2 || true
fi
case "$timeout" in
  ''|*[!0-9]*) echo "auto-rollback: timeout '$timeout' is not a whole number of seconds" >&2; exit 2 ;;
esac
if [ $# -ne 3 ]; then
  echo "usage: auto-rollback [-t timeout] <toplevel> <action> <check_file>" >&2
  exit 2
fi
toplevel=$1
action=$2
check_file=$3

previous=$(readlink -f /run/current-system 2>/dev/null || true)

switch_back() {
  if [ -n "$previous" ] && [ -x "$previous/bin/switch-to-configuration" ]; then
    "$previous/bin/switch-to-configuration" "$action" || true
  fi
}

echo switching > "$check_file"
# Upstream ignores a failed activation here and lets the confirmation decide, so a
# system that failed to activate gets confirmed. carrier switches back at once.
if ! "$toplevel/bin/switch-to-configuration" "$action"; then
  echo failed > "$check_file"
  echo "auto-rollback: activating $toplevel failed, switching back to ${previous:-nothing}" >&2
  switch_back
  exit 1
fi
echo switched > "$check_file"

# poll every 0.1 s: the deployer confirms within milliseconds over its open connection
polls=$((timeout * 10))
i=0
while :; do
  if [ "$(cat "$check_file" 2>/dev/null || true)" = confirmed ]; then
    rm -f "$check_file"
    exit 0
  fi
  [ "$i" -ge "$polls" ] && break
  sleep 0.1
  i=$((i + 1))
done

echo "auto-rollback: no confirmation within ${timeout}s, switching back to ${previous:-nothing}" >&2
switch_back
exit 1
