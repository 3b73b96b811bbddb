# Sourced by test.sh, demo.sh and bench.sh: a pinned moto server in a local venv.
#   moto_start          -> installs if needed, starts moto on a free loopback port, exports
#                          MOTO_URL and MOTO_PID, and stops it when the calling shell exits
#   moto_reset          -> forgets every account's state
# Needs only python3 (with venv) on the machine.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IAMSWEEP_VENV:-$ROOT/.venv}"
REQ="$ROOT/scripts/requirements-moto.txt"

moto_install() {
    local stamp="$VENV/.requirements"
    if [ -x "$VENV/bin/moto_server" ] && cmp -s "$REQ" "$stamp"; then
        return 0
    fi
    echo "installing moto into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
    cp "$REQ" "$stamp"
}

moto_free_port() {
    "$VENV/bin/python" - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

moto_stop() {
    if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    MOTO_PID=""
}

moto_start() {
    moto_install
    local port log
    port="$(moto_free_port)"
    log="${MOTO_LOG:-$ROOT/target/moto.log}"
    mkdir -p "$(dirname "$log")"
    MOTO_IAM_LOAD_MANAGED_POLICIES=true "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    trap moto_stop EXIT
    export MOTO_URL="http://127.0.0.1:$port"
    export MOTO_PID
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$MOTO_URL/moto-api/" 2>/dev/null \
           || "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]+'/moto-api/')" "$MOTO_URL" 2>/dev/null; then
            echo "moto is listening on $MOTO_URL (pid $MOTO_PID, log $log)" >&2
            return 0
        fi
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "moto failed to start; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "moto did not answer on $MOTO_URL within 20 s" >&2
    return 1
}

moto_reset() {
    "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1]+'/moto-api/reset', method='POST'))" "$MOTO_URL"
}

# Credentials for the emulator only; moto accepts any.
moto_env() {
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=
    unset AWS_SESSION_TOKEN AWS_PROFILE
    export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
}
