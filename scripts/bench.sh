#!/usr/bin/env bash
# Benchmarks (BENCHMARKS.md): release build, then
#   target 2: moto, ACCOUNTS x USERS seeded once; iamsweep's scan against a boto3 script that
#             only fetches the GetAccountAuthorizationDetails pages (the floor) and one that
#             lists per user (the naive scan);
#   targets 3-4: the simulated organization on the in-memory fake (benches/sim.rs), and apply's
#             requests per detach on a mixed organization;
#   target 5: a million findings written through the store (benches/sim.rs), then `report` and
#             `history` run as a user runs them, whole processes, output to /dev/null.
# Prints one table. Takes a few minutes (seeding moto is the slow part; a cold release build
# adds ~13 min). Environment: BENCH_ACCOUNTS (10), BENCH_USERS (1000), BENCH_LINK_ACCOUNTS (300),
# BENCH_LINK_MS (300), BENCH_BEFORE (0: 1 adds the 10,000-account scan at the old default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/moto.sh

ACCOUNTS="${BENCH_ACCOUNTS:-10}"
USERS="${BENCH_USERS:-1000}"
LINK_ACCOUNTS="${BENCH_LINK_ACCOUNTS:-300}"
LINK_MS="${BENCH_LINK_MS:-300}"
FIRST=400000000000
OUT="$PWD/target/bench"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

echo "building (release)..." >&2
cargo build --release --locked --quiet
cargo bench --locked --bench sim --no-run --quiet 2>/dev/null || cargo bench --locked --bench sim --no-run
SIM="$(ls -t target/release/deps/sim-* | grep -v '\.d$' | head -n 1)"
BIN="$PWD/target/release/iamsweep"

moto_start
moto_env
PY="$VENV/bin/python"

echo "seeding moto: $ACCOUNTS accounts x $USERS users..." >&2
seed_start=$(date +%s)
(cd scripts/bench && "$PY" seed_moto.py "$MOTO_URL" "$FIRST" "$ACCOUNTS" "$USERS" $((USERS / 2)) 10 2>/dev/null)
echo "seeded in $(( $(date +%s) - seed_start )) s" >&2

"$PY" - "$FIRST" "$ACCOUNTS" > "$OUT/accounts.toml" <<'PY'
import sys
first, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(f'[[account]]\nid = "{first + i:012d}"\n')
PY

echo "target 2: contenders on moto..." >&2
export AWS_ENDPOINT_URL="$MOTO_URL"
# iamsweep twice: one account at a time, the floor script's own pattern (same calls, same
# order), and with default flags (adaptive concurrency), which on moto (one Python process
# building each response under its lock) stays at a few accounts. Every contender runs three
# times.
for round in 1 2 3; do
    rm -f "$OUT"/scan.db*
    "$PY" scripts/bench/measure.py "iamsweep scan --concurrency 1" \
        "$BIN" --db "$OUT/scan.db" --accounts "$OUT/accounts.toml" --concurrency 1 scan >> "$RESULTS"
    rm -f "$OUT"/scan.db*
    "$PY" scripts/bench/measure.py "iamsweep scan (default concurrency)" \
        "$BIN" --db "$OUT/scan.db" --accounts "$OUT/accounts.toml" scan >> "$RESULTS"
    "$PY" scripts/bench/measure.py "boto3: GAAD pages only (floor)" \
        "$PY" scripts/bench/gaad_only.py "$MOTO_URL" "$FIRST" "$ACCOUNTS" >> "$RESULTS"
done
"$PY" scripts/bench/measure.py "boto3: per-user listing" \
    "$PY" scripts/bench/per_user.py "$MOTO_URL" "$FIRST" "$ACCOUNTS" >> "$RESULTS"
"$PY" - "$OUT/scan.db" >> "$RESULTS" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
calls = c.execute("SELECT sum(calls) FROM api_calls").fetchone()[0]
print(json.dumps({"contender": "iamsweep scan calls (from its database)", "calls": calls}))
PY
echo "apply of the scanned findings on moto ($ACCOUNTS x $((USERS / 2)) detaches)..." >&2
"$PY" scripts/bench/measure.py "iamsweep apply --run 1 (moto)" \
    "$BIN" --db "$OUT/scan.db" --accounts "$OUT/accounts.toml" --concurrency "$ACCOUNTS" apply --run 1 --yes >> "$RESULTS"
"$PY" - "$OUT/scan.db" >> "$RESULTS" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
run = c.execute("SELECT max(id) FROM runs WHERE kind = 'apply'").fetchone()[0]
calls = c.execute("SELECT sum(calls) FROM api_calls WHERE run_id = ?", (run,)).fetchone()[0]
detached = c.execute("SELECT count(*) FROM actions WHERE run_id = ? AND status = 'detached'", (run,)).fetchone()[0]
print(json.dumps({"contender": "apply calls (from its database)", "calls": calls, "detached": detached}))
PY
moto_stop

echo "a long link: moto behind a ${LINK_MS} ms round trip, $LINK_ACCOUNTS accounts..." >&2
# A second moto without the AWS managed policies (each account is then cheap to create), and
# the delaying proxy in front of it.
LINK_PORT="$(moto_free_port)"
PROXY_PORT="$(moto_free_port)"
LINK_MOTO="" LINK_PROXY=""
# Set before either starts, so a failure from here on stops both. (set -e holds inside traps:
# a kill of an already-stopped process must not skip moto_stop.)
trap 'kill $LINK_PROXY $LINK_MOTO 2>/dev/null || true; moto_stop' EXIT
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$LINK_PORT" > "$OUT/moto-link.log" 2>&1 &
LINK_MOTO=$!
"$PY" scripts/bench/delay_proxy.py "$PROXY_PORT" "127.0.0.1:$LINK_PORT" "$LINK_MS" &
LINK_PROXY=$!
for _ in $(seq 1 100); do
    "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1])" "http://127.0.0.1:$LINK_PORT/moto-api/" 2>/dev/null && break
    sleep 0.2
done
(cd scripts/bench && "$PY" seed_moto.py "http://127.0.0.1:$LINK_PORT" 600000000000 "$LINK_ACCOUNTS" 20 10 2 2>/dev/null)
"$PY" - 600000000000 "$LINK_ACCOUNTS" > "$OUT/link-accounts.toml" <<'PY'
import sys
first, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(f'[[account]]\nid = "{first + i:012d}"\n')
PY
for c in default 8 16 32 64 128; do
    rm -f "$OUT"/link.db*
    flag=(); [ "$c" = default ] || flag=(--concurrency "$c")
    AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT" "$PY" scripts/bench/measure.py "link scan $c" \
        "$BIN" --db "$OUT/link.db" --accounts "$OUT/link-accounts.toml" "${flag[@]}" scan >> "$RESULTS"
done
kill $LINK_PROXY $LINK_MOTO 2>/dev/null || true
wait $LINK_PROXY $LINK_MOTO 2>/dev/null || true
trap moto_stop EXIT

echo "targets 3-5: simulated organization..." >&2
"$SIM" scan-org 1000 1000 100 50 64 >> "$RESULTS"
# 10,000 accounts with default flags (adaptive concurrency), and with the old default of 8
# accounts at once when BENCH_BEFORE=1 (it takes over two minutes).
"$SIM" scan-org 10000 100 100 50 0 >> "$RESULTS"
if [ "${BENCH_BEFORE:-0}" = 1 ]; then
    "$SIM" scan-org 10000 100 100 50 8 >> "$RESULTS"
fi
echo "discovering 10,000 accounts from an Organizations that allows 2 requests/s (~6 min)..." >&2
"$SIM" org-walk 10000 2 >> "$RESULTS"
"$SIM" throttle 100 40 5 10 9 >> "$RESULTS"
# Throttling that slowing down does not ease (another workload draining the quota).
"$SIM" steady-throttle 4 60 4 >> "$RESULTS"
echo "apply on a mixed organization (requests per detach)..." >&2
"$SIM" mixed 4 300 20 >> "$RESULTS"
# The same without the settle window: what the window costs in wall time.
"$SIM" mixed 4 300 20 0 >> "$RESULTS"
rm -f "$OUT"/million.db*
SIM_KEEP_DB="$OUT/million.db" "$SIM" sqlite 1000 1000 >> "$RESULTS"
echo "target 5: report and history as a user runs them, on the million findings..." >&2
report_rounds() { # LABEL RUN
    for round in 1 2 3; do
        for format in csv json; do
            "$PY" scripts/bench/measure.py --discard-stdout "$1 $format" \
                "$BIN" --db "$OUT/million.db" report "$2" --format "$format" >> "$RESULTS"
        done
    done
}
report_rounds "report of the scan" 1
"$SIM" sqlite-apply "$OUT/million.db" >> "$RESULTS"
report_rounds "report of an apply of half of them" 2
for round in 1 2 3; do
    "$PY" scripts/bench/measure.py --discard-stdout "history of a user" \
        "$BIN" --db "$OUT/million.db" history --account 500000000500 --user user00042 >> "$RESULTS"
    "$PY" scripts/bench/measure.py --discard-stdout "history of an account" \
        "$BIN" --db "$OUT/million.db" history --account 500000000500 >> "$RESULTS"
done
rm -f "$OUT"/million.db*

"$PY" scripts/bench/table.py "$RESULTS" "$ACCOUNTS" "$USERS"
