#!/usr/bin/env bash
# The analytics story of the README, with the CLI, against a running sandbox
# (`cargo run --release -p cgs-host -- sandbox`). Run it from the repository's root (the files it
# writes, and the datasets' locations, are relative to where it runs):
#
#   bash examples/sql-cleanroom/demo/walkthrough.sh
#
# Each step prints what it does. The sealed files, keys and the output go to ./analytics-demo/.
# Set CGS (the CLI) and ROOM (the clean room) to use other binaries than `cargo run`'s.
set -euo pipefail
export CGS_URL=${CGS_URL:-https://127.0.0.1:8443} CGS_CA=${CGS_CA:-sandbox/service-cert.pem}
CGS=${CGS:-"cargo run -q -p cgs-client --"}
ROOM=${ROOM:-"cargo run -q --release -p cgs-sql-cleanroom --"}
MEMBERS=${MEMBERS:-sandbox/members}
ISV=$MEMBERS/isv.key DP=$MEMBERS/data-provider.key CP=$MEMBERS/code-provider.key
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
DEMO=$REPO/examples/sql-cleanroom/demo
OUT=analytics-demo
C=${CONTRACT:-insights-$(date +%s)}
# The clean room's host_data in its (virtual) evidence; the contract's policy admits it.
HD=${HOST_DATA:-$(printf 'aa11%.0s' {1..16})}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
all_approve() { for k in $ISV $DP $CP; do CGS_KEY=$k $CGS proposal vote "$1" approve >/dev/null; done; echo "proposal $1: approved by isv, data-provider, code-provider"; }

step "1. The ISV publishes the analytics plugin; every member rebuilds it, checks the hash, and approves"
if $CGS call GET /gov/plugins 2>/dev/null | grep -q '"analytics"'; then
  echo "analytics is already installed"
else
  P=$(CGS_KEY=$ISV $CGS --json plugin publish "$REPO/plugins/analytics" | field '["proposal_id"]')
  for k in $ISV $DP $CP; do CGS_KEY=$k $CGS plugin verify analytics --proposal "$P" --workspace "$REPO" | head -1; done
  all_approve "$P"
fi

step "2. A contract between the three members, accepted, with a clean-room policy admitting host_data $HD"
IDS=$(CGS_KEY=$ISV $CGS --json member list | python3 -c 'import json,sys; print(" ".join("--collaborator "+m["member_id"] for m in json.load(sys.stdin)["value"]))')
# shellcheck disable=SC2086
CGS_KEY=$ISV $CGS contract create "$C" --data '{"purpose":"sales insights by customer segment"}' $IDS
all_approve "$(CGS_KEY=$ISV $CGS --json contract propose "$C" | field '["proposal_id"]')"
all_approve "$(CGS_KEY=$ISV $CGS --json policy propose "$C" --add --claim "x-ms-sevsnpvm-hostdata=$HD" | field '["proposal_id"]')"

step "3. The data providers register their datasets with rules, seal their files, and put their keys"
CGS_KEY=$DP $CGS dataset put "$C" sales --file $DEMO/sales.json
CGS_KEY=$CP $CGS dataset put "$C" customers --file $DEMO/customers.json
CGS_KEY=$DP $CGS dataset show "$C" sales
for d in sales:$DP customers:$CP; do
  name=${d%%:*} key=${d#*:}
  $ROOM keygen > "$OUT/$name.key"
  $ROOM seal --key-file "$OUT/$name.key" --contract "$C" --dataset "$name" "$DEMO/$name.csv" "$OUT/$name.csv.enc"
  CGS_KEY=$key $CGS call PUT "/app/contracts/$C/secrets/$name-key" --data "{\"value\":\"$(cat "$OUT/$name.key")\"}" >/dev/null
done

step "4. A query that breaks a rule is refused, naming the column and the rule"
CGS_KEY=$ISV $CGS query submit "$C" leak --sql "SELECT email, COUNT(*) AS n FROM customers GROUP BY email" --epsilon 0.1 || true

step "5. The code provider submits a compliant query; its approvers are derived from ownership; both approve"
SQL="SELECT c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales s JOIN customers c ON s.customer_id = c.id GROUP BY c.segment"
CGS_KEY=$CP $CGS query submit "$C" by-segment --sql "$SQL" --epsilon 0.25
CGS_KEY=$DP $CGS query approve "$C" by-segment --revision 1
CGS_KEY=$CP $CGS query approve "$C" by-segment --revision 1

step "6. The output's owner (code-provider) puts the key the result is sealed with"
$ROOM keygen > "$OUT/output.key"
CGS_KEY=$CP $CGS call PUT "/app/contracts/$C/secrets/by-segment-output" --data "{\"value\":\"$(cat "$OUT/output.key")\"}" >/dev/null
echo "secret by-segment-output put by code-provider"

step "7. The clean room runs it: session, ticket, keys, DataFusion, small groups dropped, events, completion"
$ROOM run --contract "$C" --query by-segment --run-id run-1 --host-data "$HD" --data-dir . \
  --output-key-secret by-segment-output --output "$OUT/run-1.csv.enc"

step "8. The code provider opens the result"
$ROOM open --key-file "$OUT/output.key" --contract "$C" --run-id run-1 "$OUT/run-1.csv.enc"

step "9. A kill switch stops the next run"
CGS_KEY=$DP $CGS consent disable "$C" --reason "audit pending"
$ROOM run --contract "$C" --query by-segment --run-id run-2 --host-data "$HD" --data-dir . \
  --output-key-secret by-segment-output --output "$OUT/run-2.csv.enc" || true
CGS_KEY=$DP $CGS consent enable "$C"

step "10. The record: every run, completion and denial, with its transaction; the clean room's audit events"
CGS_KEY=$DP $CGS run list "$C" --dataset sales
CGS_KEY=$DP $CGS event list "$C" --scope analytics
echo
echo "Fetch any transaction's receipt with: CGS_KEY=$DP $CGS receipt get <tx> -o r.cose, then 'cgs receipt verify' (see \"Verify the ledger\")."
