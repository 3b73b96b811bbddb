#!/usr/bin/env bash
# The test command: every test iamsweep has, on a machine with only Rust and python3.
#   - installs a pinned moto (the AWS emulator) in .venv on first use,
#   - starts it on a free loopback port and stops it on exit, even on failure,
#   - runs unit tests, fake-IAM tests and the end-to-end tests against moto
#     (`#[ignore]`d in plain `cargo test`, included here).
# Extra arguments go to the test binaries, e.g. scripts/test.sh apply_
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/moto.sh
moto_start
export IAMSWEEP_MOTO_URL="$MOTO_URL"
# Nothing from the developer's own AWS setup may leak into the tests.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL AWS_SESSION_TOKEN
export AWS_EC2_METADATA_DISABLED=true

# The real-browser check of the HTML report needs Chromium: scripts/browser-check.sh runs it
# (and .ci/run, after this script).
cargo test --locked -- --include-ignored --skip browser_ "$@"
