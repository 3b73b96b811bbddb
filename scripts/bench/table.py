"""Prints the benchmark table from results.jsonl (written by scripts/bench.sh).

usage: table.py RESULTS ACCOUNTS USERS
"""
import json
import sys

path, accounts, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open(path) if l.strip()]
by = {}
for r in rows:
    key = r.get("contender") or r.get("scenario")
    by.setdefault(key, []).append(r)


def best(key):
    runs = [r for r in by.get(key, []) if r.get("exit", 0) == 0]
    return min(runs, key=lambda r: r["wall_s"]) if runs else None


def verdict(ok):
    return "met" if ok else "NOT MET"


lines = []
head = ("contender / scenario", "calls", "wall s", "peak RSS MiB", "ratio", "target")
ours = best("iamsweep scan (SQLite included)")
floor = best("boto3: GAAD pages only (floor)")
naive = best("boto3: per-user listing")
our_calls = by.get("iamsweep scan calls (from its database)", [{}])[0].get("calls")
if ours and floor and naive:
    floor_calls = int(floor["last_line"] or 0)
    naive_calls = int(naive["last_line"] or 0)
    lines.append((f"iamsweep scan, moto {accounts}x{users}", our_calls, ours["wall_s"], ours["peak_rss_mib"],
                  "1.00", ""))
    r_floor = ours["wall_s"] / floor["wall_s"]
    lines.append(("boto3 GAAD pages only (floor)", floor_calls, floor["wall_s"], floor["peak_rss_mib"],
                  f"iamsweep/floor {r_floor:.2f}", f"<= 1.0: {verdict(r_floor <= 1.0)}"))
    r_naive = naive["wall_s"] / ours["wall_s"]
    r_calls = naive_calls / our_calls if our_calls else 0
    lines.append(("boto3 per-user listing", naive_calls, naive["wall_s"], naive["peak_rss_mib"],
                  f"x{r_naive:.1f} time, x{r_calls:.0f} calls",
                  f">= 10x time: {verdict(r_naive >= 10)}; >= 500x calls: {verdict(r_calls >= 500)}"))
ap = best("iamsweep apply --run 1 (moto)")
apc = (by.get("apply calls (from its database)") or [None])[0]
if ap and apc:
    per = apc["calls"] / apc["detached"] if apc["detached"] else 0
    lines.append((f"iamsweep apply, moto: {apc['detached']} detaches", apc["calls"], ap["wall_s"],
                  ap["peak_rss_mib"], f"{per:.2f} calls per detach", "(issue 3: measured, no target)"))
s = (by.get("scan-org") or [None])[0]
if s:
    ok = s["wall_s"] <= 10 and s["peak_rss_mib"] <= 300 and s["findings_in_db"] >= s["accounts"] * s["users_per_account"]
    lines.append((f"fake org {s['accounts']}x{s['users_per_account']}, {s['latency_ms']} ms/call, "
                  f"{s['concurrency']} at once; {s['findings_in_db']} findings in SQLite",
                  s["calls"], s["wall_s"], s["peak_rss_mib"], "",
                  f"<= 10 s, <= 300 MiB: {verdict(ok)}"))
t = (by.get("throttle") or [None])[0]
if t:
    ok = t["throttled_pct"] < 5 and t["apply_ratio"] <= 1.3 and t["accounts_completed"] == t["accounts"]
    lines.append((f"throttle {t['limit_per_s']}/s/account, {t['accounts']} accounts x "
                  f"{t['detaches_per_account']} detaches, paced {t['pace_per_s']}/s; "
                  f"scan {t['scan_wall_s']} s, {t['throttled_pct']}% throttled",
                  t["calls"], t["apply_wall_s"], t["peak_rss_mib"],
                  f"apply/bound {t['apply_ratio']:.2f} (bound {t['apply_bound_s']} s)",
                  f"< 5% throttled, <= 1.3x: {verdict(ok)}"))
q = (by.get("sqlite") or [None])[0]
if q:
    ok = (q["write_s"] <= 5 and q["report_query_s"] < 1 and q["report_json_s"] < 1
          and q["history_query_s"] < 1)
    lines.append((f"SQLite: write {q['findings']} findings; report of all {q['report_rows']}: "
                  f"csv {q['report_query_s']} s, json {q['report_json_s']} s; "
                  f"history {q['history_query_s']} s",
                  "", q["write_s"], q["peak_rss_mib"], "", f"write <= 5 s, queries < 1 s: {verdict(ok)}"))

widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
for row in [head] + lines:
    print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
