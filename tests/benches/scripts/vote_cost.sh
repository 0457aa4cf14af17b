#!/bin/bash
# A member's vote, timed: `cgs proposal vote` (and a `cgs ledger checkpoint` after each) on one
# release sandbox, with the kept-checkpoint check (CGS_STATE_DIR set) and without (no state
# directory: the CLI checks nothing and says so), interleaved, for each CLI binary given.
#
#   cargo build --release -p cgs-host -p cgs-client
#   tests/benches/scripts/vote_cost.sh [ROUNDS] [NAME=CLI ...]   (default: 25 now=target/release/cgs)
#
# Prints a table (whole-process wall time, ms; failed runs are reported and left out). Needs
# python3. Uses 127.0.0.1:18445 and a temporary directory.
set -u
cd "$(dirname "$0")/../../.."
T=${CARGO_TARGET_DIR:-target}/release
R=${1:-25}
shift || true
CLIS=("$@")
[ ${#CLIS[@]} -eq 0 ] && CLIS=("now=$T/cgs")
for b in "$T/cgs-host" "$T/cgs" "${CLIS[@]#*=}"; do
  [ -x "$b" ] || { echo "$b is missing: cargo build --release -p cgs-host -p cgs-client" >&2; exit 1; }
done
D=$(mktemp -d)
trap 'kill $SB 2>/dev/null; wait $SB 2>/dev/null; rm -rf $D' EXIT
$T/cgs-host sandbox --dir $D/sb --listen 127.0.0.1:18445 > $D/sandbox.log 2>&1 &
SB=$!
for i in $(seq 1 600); do
  grep -q "serving url" $D/sandbox.log 2>/dev/null && break
  kill -0 $SB 2>/dev/null || { echo "the sandbox stopped:" >&2; tail -20 $D/sandbox.log >&2; exit 1; }
  sleep 1
done
grep -q "serving url" $D/sandbox.log || { echo "the sandbox did not start in 600 s" >&2; exit 1; }
export CGS_URL=https://127.0.0.1:18445 CGS_CA=$D/sb/service-cert.pem CGS_KEY=$D/sb/members/isv.key
N=$((R * ${#CLIS[@]} * 2))
ids=()
for i in $(seq 1 $N); do
  ids+=($($T/cgs --json proposal create --action set_recovery_threshold --args '{"threshold": 2}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["proposal_id"])'))
done
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
run() { # name cli mode args...
  local name=$1 cli=$2 mode=$3
  shift 3
  if [ $mode = with ]; then CGS_STATE_DIR=$D/state-$name $cli "$@"; else env -u HOME -u XDG_STATE_HOME -u CGS_STATE_DIR $cli "$@"; fi
}
k=0
for r in $(seq 1 $R); do
  for c in "${CLIS[@]}"; do
    name=${c%%=*} cli=${c#*=}
    for mode in with without; do
      t=$(date +%s%N)
      if run $name $cli $mode proposal vote ${ids[$k]} approve >/dev/null 2>$D/err; then
        ms $t >> $D/vote-$name-$mode
      else echo "vote $k ($name, $mode) failed: $(tail -1 $D/err)" >&2; fi
      k=$((k + 1))
      t=$(date +%s%N)
      if run $name $cli $mode ledger checkpoint >/dev/null 2>$D/err; then
        ms $t >> $D/cp-$name-$mode
      else echo "checkpoint ($name, $mode) failed: $(tail -1 $D/err)" >&2; fi
    done
  done
done
stat() { sort -n $1 | awk '{a[NR]=$1; s+=$1} END {printf "%d | %.1f | %d", a[int((NR+1)/2)], s/NR, a[int(NR*0.9+0.5)]}'; }
echo "| command | CLI | kept-checkpoint check | median ms | mean ms | p90 ms |"
echo "|---|---|---|---:|---:|---:|"
for what in vote cp; do
  for c in "${CLIS[@]}"; do
    name=${c%%=*}
    for mode in with without; do
      echo "| $([ $what = vote ] && echo 'cgs proposal vote' || echo 'cgs ledger checkpoint') | $name | $mode | $(stat $D/$what-$name-$mode) |"
    done
  done
done
