#!/usr/bin/env bash
# What a scheduled sweep adds to the audit database when nothing changed (BENCHMARKS.md, "A
# year of scheduled sweeps"): moto, ACCOUNTS accounts of USERS users each holding 3 managed
# policies directly (2 also through a group: redundant; 1 direct-only), scanned once, then SCANS
# more times unchanged. Prints the file's size after each scan and the bytes each unchanged scan
# added per finding.
#   usage: scripts/bench/history-growth.sh [ACCOUNTS] [USERS] [SCANS]   (default 4 40 5: 480 findings)
# IAMSWEEP_BIN: another build to measure (an older release, for comparison).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/moto.sh
ACCOUNTS="${1:-4}"
USERS="${2:-40}"
SCANS="${3:-5}"
if [ -z "${IAMSWEEP_BIN:-}" ]; then cargo build --quiet --locked; fi
BIN="${IAMSWEEP_BIN:-$PWD/target/debug/iamsweep}"
moto_start
moto_env
export AWS_ENDPOINT_URL="$MOTO_URL"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"; moto_stop' EXIT
cd "$WORK"
ids=()
for i in $(seq 1 "$ACCOUNTS"); do ids+=("$(printf '26%010d' "$i")"); done
"$VENV/bin/python" - "$MOTO_URL" "$USERS" "${ids[@]}" <<'PY'
import json, sys, boto3
url, users, accounts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
doc = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})
for account in accounts:
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1")
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/seed",
                        RoleSessionName="seed")["Credentials"]
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=c["AccessKeyId"],
                       aws_secret_access_key=c["SecretAccessKey"],
                       aws_session_token=c["SessionToken"])
    p = [iam.create_policy(PolicyName=f"P{i}", PolicyDocument=doc)["Policy"]["Arn"]
         for i in range(3)]
    iam.create_group(GroupName="ops")
    for arn in p[:2]:
        iam.attach_group_policy(GroupName="ops", PolicyArn=arn)
    for u in range(users):
        name = f"user{u:04d}"
        iam.create_user(UserName=name)
        iam.add_user_to_group(GroupName="ops", UserName=name)
        for arn in p:
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
PY
{
    echo '[defaults]'
    echo 'role_name = "IamSweepRole"'
    for id in "${ids[@]}"; do printf '\n[[account]]\nid = "%s"\n' "$id"; done
} > accounts.toml
findings=$((ACCOUNTS * USERS * 3))
size() { stat -c %s iamsweep.db; }
"$BIN" scan > /dev/null
first=$(size)
echo "scan 1: $first bytes ($findings findings)"
for n in $(seq 2 $((SCANS + 1))); do
    "$BIN" scan > /dev/null
    echo "scan $n: $(size) bytes"
done
last=$(size)
recorded=$("$VENV/bin/python" -c "import sqlite3; print(sqlite3.connect('iamsweep.db').execute('SELECT count(*) FROM findings').fetchone()[0])")
echo "findings rows read through the findings view: $recorded ($((SCANS + 1)) scans x $findings)"
"$VENV/bin/python" -c "print(f'each unchanged scan added {($last - $first) / $SCANS / $findings:.1f} bytes per finding ({($last - $first) / $SCANS:.0f} bytes a scan)')"
