#!/usr/bin/env bash
# The HTML report in a real headless browser: builds a report, loads it in Chromium (network
# out of reach, fresh profile), checks the summary and findings in the rendered DOM and that
# its script works, and saves a screenshot under target/html-report/. Not one of the README's
# two commands: it needs Chromium, which .ci/run installs (chromium-headless-shell, or
# chromium). A missing browser is a failure, never a skip.
#   IAMSWEEP_BROWSER=/path/to/chrome scripts/browser-check.sh   # another Chromium build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

browser="${IAMSWEEP_BROWSER:-}"
if [ -z "$browser" ]; then
    browser="$(command -v chromium-headless-shell || command -v chromium || true)"
fi
if [ -z "$browser" ] || [ ! -x "$browser" ]; then
    echo "no headless Chromium found: apt-get install chromium-headless-shell (or set IAMSWEEP_BROWSER)" >&2
    exit 1
fi
echo "browser: $browser ($("$browser" --version 2>/dev/null || echo 'version unknown'))" >&2
export IAMSWEEP_BROWSER="$browser"
cargo test --locked --test browser_report -- --include-ignored --nocapture
