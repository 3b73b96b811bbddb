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


def walls(key):
    """Every successful run's wall seconds, and their median (the figure the ratios use)."""
    w = sorted(r["wall_s"] for r in by.get(key, []) if r.get("exit", 0) == 0)
    return w, (w[len(w) // 2] if w else None)


def failed(key):
    return [r for r in by.get(key, []) if r.get("exit", 0) != 0]


def verdict(ok):
    return "met" if ok else "NOT MET"


def runs_text(w):
    return ", ".join(f"{x:.2f}" for x in w)


lines = []
head = ("contender / scenario", "calls", "wall s", "peak RSS MiB", "ratio", "target")
one_w, one = walls("iamsweep scan --concurrency 1")
dflt_w, dflt = walls("iamsweep scan (default concurrency)")
floor_w, floor = walls("boto3: GAAD pages only (floor)")
naive = best("boto3: per-user listing")
our_calls = by.get("iamsweep scan calls (from its database)", [{}])[0].get("calls")
if one and dflt and floor and naive:
    rss = max(r["peak_rss_mib"] for r in by["iamsweep scan --concurrency 1"])
    floor_calls = int(best("boto3: GAAD pages only (floor)")["last_line"] or 0)
    naive_calls = int(naive["last_line"] or 0)
    r_one = one / floor
    lines.append((f"iamsweep scan --concurrency 1, moto {accounts}x{users} (runs {runs_text(one_w)})",
                  our_calls, one, rss, f"/floor {r_one:.2f}", f"<= 1.0: {verdict(r_one <= 1.0)}"))
    r_dflt = dflt / floor
    lines.append((f"iamsweep scan, default flags (adaptive concurrency) (runs {runs_text(dflt_w)})", our_calls, dflt,
                  max(r["peak_rss_mib"] for r in by["iamsweep scan (default concurrency)"]),
                  f"/floor {r_dflt:.2f}", "(moto builds concurrent responses slower)"))
    lines.append((f"boto3 GAAD pages only, the floor (runs {runs_text(floor_w)})", floor_calls, floor,
                  max(r["peak_rss_mib"] for r in by["boto3: GAAD pages only (floor)"]), "", ""))
    r_naive = naive["wall_s"] / one
    r_calls = naive_calls / our_calls if our_calls else 0
    lines.append(("boto3 per-user listing", naive_calls, naive["wall_s"], naive["peak_rss_mib"],
                  f"x{r_naive:.1f} time, x{r_calls:.0f} calls",
                  f">= 10x time: {verdict(r_naive >= 10)}; >= 500x calls: {verdict(r_calls >= 500)}"))
ap = best("iamsweep apply --run 1 (moto)")
apc = (by.get("apply calls (from its database)") or [None])[0]
if ap and apc:
    per = apc["calls"] / apc["detached"] if apc["detached"] else 0
    lines.append((f"iamsweep apply --max-rate 20 (default), moto: {apc['detached']} detaches "
                  f"(before group proofs: 6.00 per detach, 154.5 s)", apc["calls"], ap["wall_s"],
                  ap["peak_rss_mib"], f"{per:.2f} calls per detach",
                  f"<= 1.3: {verdict(0 < per <= 1.3)}"))
for mx in by.get("mixed", []):
    lines.append((f"fake mixed org {mx['accounts']}x{mx['users_per_account']} users, 0-3 groups, tricky users, "
                  f"--max-rate {mx['max_rate']} --settle {mx['settle_s']}s: {mx['detached']} detaches",
                  mx["calls"], mx["wall_s"], mx["peak_rss_mib"], f"{mx['calls_per_detach']:.2f} calls per detach",
                  f"<= 2.0: {verdict(mx['calls_per_detach'] <= 2.0 and mx['apply_status'] == 'completed')}"))
for s in by.get("scan-org", []):
    complete = s["findings_in_db"] >= s["accounts"] * s["users_per_account"]
    at_once = "adaptive (default flags)" if s["concurrency"] == 0 else f"{s['concurrency']} at once"
    if s["accounts"] >= 10000 and s["concurrency"] == 0:
        target = "<= 20 s, <= 300 MiB"
        ok = s["wall_s"] <= 20 and s["peak_rss_mib"] <= 300 and complete
    elif s["accounts"] >= 10000:
        target, ok = "(the old default, for comparison)", None
    else:
        target = "<= 10 s, <= 300 MiB"
        ok = s["wall_s"] <= 10 and s["peak_rss_mib"] <= 300 and complete
    lines.append((f"fake org {s['accounts']}x{s['users_per_account']}, {s['latency_ms']} ms/call, "
                  f"{at_once}; {s['findings_in_db']} findings in SQLite",
                  s["calls"], s["wall_s"], s["peak_rss_mib"], "",
                  target if ok is None else f"{target}: {verdict(ok)}"))
link = {k[len("link scan "):]: best(k) for k in by if k.startswith("link scan ")}
if link.get("default"):
    fixed = {c: r for c, r in link.items() if c != "default" and r}
    best_c = min(fixed, key=lambda c: fixed[c]["wall_s"]) if fixed else None
    for c, r in sorted(link.items(), key=lambda kv: (kv[0] != "default", int(kv[0]) if kv[0].isdigit() else 0)):
        if not r:
            continue
        what = "default flags (adaptive)" if c == "default" else f"--concurrency {c}"
        ratio, target = "", ""
        if c == "default" and best_c:
            q = r["wall_s"] / fixed[best_c]["wall_s"]
            ratio = f"/best fixed ({best_c}) {q:.2f}"
            target = f"<= 1.5: {verdict(q <= 1.5)}"
        lines.append((f"iamsweep scan, moto behind a long link, {what}", "", r["wall_s"],
                      r["peak_rss_mib"], ratio, target))
ow = (by.get("org-walk") or [None])[0]
if ow:
    ok = ow["status"] == "completed" and ow["found"] == ow["accounts"]
    lines.append((f"Organizations walk of {ow['accounts']} accounts (nested OUs, pages of 20), "
                  f"throttled at {ow['limit_per_s']}/s; {ow['throttled']} calls throttled",
                  ow["calls"], ow["wall_s"], ow["peak_rss_mib"], f"/bound {ow['wall_s'] / ow['bound_s']:.2f} "
                  f"(bound {ow['bound_s']} s)", f"no failure, time reported: {verdict(ok)}"))
t = (by.get("throttle") or [None])[0]
if t:
    ok = t["throttled_pct"] < 5 and t["apply_ratio"] <= 1.3 and t["accounts_completed"] == t["accounts"]
    lines.append((f"throttle {t['limit_per_s']}/s/account, {t['accounts']} accounts x "
                  f"{t['detaches_per_account']} detaches, paced {t['pace_per_s']}/s; "
                  f"scan {t['scan_wall_s']} s, {t['throttled_pct']}% throttled",
                  t["calls"], t["apply_wall_s"], t["peak_rss_mib"],
                  f"apply/bound {t['apply_ratio']:.2f} (bound {t['apply_bound_s']} s)",
                  f"< 5% throttled, <= 1.3x: {verdict(ok)}"))
st = (by.get("steady-throttle") or [None])[0]
if st:
    ok = st["ratio"] <= 3 and st["detached"] == st["unthrottled_detached"]
    lines.append((f"apply, every {st['throttle_every']}th call throttled whatever the pace, "
                  f"{st['accounts']} accounts x {st['users_per_account']} detaches, --max-rate 20; "
                  f"{st['throttled']} throttled (unthrottled: {st['unthrottled_wall_s']} s)",
                  st["throttled_calls"], st["throttled_wall_s"], st["peak_rss_mib"],
                  f"/unthrottled {st['ratio']:.2f}", f"<= 3x: {verdict(ok)}"))
q = (by.get("sqlite") or [None])[0]
if q:
    ok = q["write_s"] <= 5 and q["findings_stored"] == q["findings"]
    lines.append((f"SQLite: write {q['findings']} findings, one transaction per account; "
                  f"{q['findings_stored']} stored", "", q["write_s"], q["peak_rss_mib"], "",
                  f"<= 5 s: {verdict(ok)}"))
qa = (by.get("sqlite-apply") or [None])[0]
for label, note in [("report of the scan", "< 1 s"),
                    ("report of an apply of half of them", "(beyond the target) < 1 s"),
                    ("history of a user", "< 1 s"), ("history of an account", "< 1 s")]:
    for fmt in (["csv", "json"] if label.startswith("report") else [""]):
        key = f"{label} {fmt}".strip()
        w, med = walls(key)
        if not w:
            continue
        bad = failed(key)
        what = f"iamsweep {key}" + (f" ({qa['actions']} actions)" if "apply" in key and qa else "")
        lines.append((f"{what} > /dev/null (runs {runs_text(w)})", "", med,
                      max(r["peak_rss_mib"] for r in by[key]), "",
                      f"{note}: {verdict(med < 1 and not bad)}" + (f"; {len(bad)} FAILED" if bad else "")))

widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
for row in [head] + lines:
    print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
