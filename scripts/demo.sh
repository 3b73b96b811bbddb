#!/usr/bin/env bash
# The newcomer demo: iamsweep's whole story against a local AWS emulator, no AWS account needed.
# Starts moto, seeds three accounts, then scan -> report -> apply --yes -> report -> runs,
# checks that only redundant direct attachments were removed, and stops moto.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/moto.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "building iamsweep"
cargo build --quiet --locked
BIN="$PWD/target/debug/iamsweep"

step "starting the AWS emulator (moto) on loopback"
moto_start
moto_env

ACCOUNTS=(210000000001 210000000002 210000000003)
OUT="$PWD/demo-output"
rm -rf "$OUT" && mkdir -p "$OUT"
cd "$OUT"

step "seeding a demo organization of ${#ACCOUNTS[@]} accounts"
"$VENV/bin/python" ../scripts/demo/seed.py seed "$MOTO_URL" "${ACCOUNTS[@]}"
"$VENV/bin/python" ../scripts/demo/seed.py state "$MOTO_URL" "${ACCOUNTS[@]}" > before.json

cat > accounts.toml <<TOML
# Written by scripts/demo.sh. See ../accounts.toml for every key.
[defaults]
role_name = "IamSweepRole"
exclude_users = ["break-glass-*"]

[[account]]
id = "${ACCOUNTS[0]}"
name = "prod"

[[account]]
id = "${ACCOUNTS[1]}"
name = "staging"

[[account]]
id = "${ACCOUNTS[2]}"
name = "sandbox"
TOML
export AWS_ENDPOINT_URL="$MOTO_URL"

step "scan: read every account, change nothing"
run "$BIN" scan

step "report: every direct attachment the scan found"
run "$BIN" report

step "apply --yes: detach only what a group still grants, verified live"
echo "(about 30 s: IAM is eventually consistent, so apply relies on a grant only once the scan saw it"
echo " 15 s ago, and post-checks each detach once another 15 s have passed; see docs/safety.md)"
run "$BIN" apply --yes

step "report: what apply did, per finding"
run "$BIN" report

step "runs: the audit history"
run "$BIN" runs

step "history: every change, with its AWS request id"
run "$BIN" history

step "check: only redundant direct attachments are gone"
"$VENV/bin/python" ../scripts/demo/seed.py state "$MOTO_URL" "${ACCOUNTS[@]}" > after.json
"$VENV/bin/python" - before.json after.json <<'PY'
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
ok = True
for acct, b in before.items():
    a = after[acct]
    for key, was in b.items():
        now = a[key]
        if key.endswith(":policies"):
            gone = sorted(set(was) - set(now))
            if set(now) - set(was):
                ok = False; print(f"  {acct} {key}: gained {sorted(set(now) - set(was))}")
            if gone:
                print(f"  {acct} {key.split(':')[1]}: detached {', '.join(p.split('/')[-1] for p in gone)}")
        elif was != now:
            ok = False; print(f"  {acct} {key}: changed from {was} to {now}")
print("OK: group memberships, group policies and direct-only attachments are untouched" if ok
      else "FAILED: something else changed")
sys.exit(0 if ok else 1)
PY

step "rollback 2: the re-attach list as a ready-to-run aws CLI script (first lines)"
"$BIN" rollback 2 > rollback-run-2.sh
head -n 24 rollback-run-2.sh
echo "... (the whole script is in $OUT/rollback-run-2.sh; --format json and csv exist too)"

step "rollback 2 --apply --yes: re-attach them as a new recorded run"
run "$BIN" rollback 2 --apply --yes

step "check: every account is exactly as it was seeded"
"$VENV/bin/python" ../scripts/demo/seed.py state "$MOTO_URL" "${ACCOUNTS[@]}" > restored.json
if cmp -s before.json restored.json; then
    echo "OK: the state after rollback equals the seeded state"
else
    echo "FAILED: the state after rollback differs:"; diff before.json restored.json || true
    exit 1
fi

step "runs: the whole story"
run "$BIN" runs
echo
echo "the audit database is $OUT/iamsweep.db; try: sqlite3 $OUT/iamsweep.db 'SELECT * FROM actions'"
