"""Runs a command and prints one JSON line: wall seconds, peak RSS of the command (MiB), its
exit code, and the last line of its stdout (the calls it reports, for the baselines).

usage: measure.py [--discard-stdout] NAME CMD [ARGS...]
  --discard-stdout  the command writes to /dev/null (a report of a million rows), as `> /dev/null`
"""
import json
import resource
import subprocess
import sys
import time

args = sys.argv[1:]
discard = args[0] == "--discard-stdout"
if discard:
    args = args[1:]
name, cmd = args[0], args[1:]
start = time.monotonic()
proc = subprocess.run(cmd, stdout=subprocess.DEVNULL if discard else subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
wall = time.monotonic() - start
rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
out = [] if discard else proc.stdout.strip().splitlines()
print(json.dumps({
    "contender": name,
    "exit": proc.returncode,
    "wall_s": round(wall, 2),
    "peak_rss_mib": round(rss_kib / 1024, 1),
    "last_line": out[-1] if out else "",
    "stderr_tail": proc.stderr.strip().splitlines()[-3:] if proc.returncode else [],
}))
