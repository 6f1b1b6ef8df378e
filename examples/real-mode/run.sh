#!/usr/bin/env bash
# Real mode quick-start (docs/real-mode.md): brings up, on loopback, from the config files
# beside this script,
#   hmsim serve kms    (kms.yaml)        the fake KMS
#   hmsim serve cloud  (cloud.yaml)      the fake Webex cloud, relaying keys to the KMS
#   hmsim serve imp    (imp.yaml)        one fake IM and Presence node
#   connector          (connector.yaml)  the real message connector, with the registration
#                                        token the cloud printed
# then runs talk.py: Bob on Jabber (slixmpp) and Alice on Webex (REST, WebSocket, jwcrypto)
# talk through the connector. Every wait is bounded; every process started here is stopped on
# exit, however the script ends. Logs are in a temporary directory, printed on failure (kept
# with KEEP_LOGS=1).
#
# Environment (all optional):
#   HMSIM, CONNECTOR   binaries to use (default: built with cargo build --release)
#   PYTHON             the Python with slixmpp and jwcrypto (default python3)
#   KEEP_LOGS=1        keep the log directory
# Exit codes: 0 they talked; 1 a step failed; 3 a Python package is missing.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
export NO_COLOR=1

# Bounds, in seconds.
BUILD_TIMEOUT=1800      # a release build from scratch on a 2-core machine
READY_TIMEOUT=20        # a server prints its `listening` lines
REGISTER_TIMEOUT=30     # the connector registers (Control Hub answers with the delay)
TALK_TIMEOUT=480        # the conversation, including the registration delay (up to 5 min)
STOP_TIMEOUT=5          # a process exits after TERM

# Loopback ports the configs use (kms, cloud, c2s, component, AXL).
PORTS=(18444 18443 15222 17400 18445)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hmsim-real-mode.XXXXXX")
PIDS=()

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Stops every process started here: TERM, up to STOP_TIMEOUT seconds to exit, then KILL.
stop_all() {
    local pid deadline=$((SECONDS + STOP_TIMEOUT))
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() {
    stop_all
    if [[ "${KEEP_LOGS:-}" == 1 ]]; then
        echo "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

fail() {
    echo "FAIL: $*" >&2
    local f
    for f in "$WORK"/*.out "$WORK"/*.log; do
        [[ -s "$f" ]] || continue
        echo "--- last lines of $(basename "$f") ---" >&2
        tail -n 20 "$f" >&2
    done
    exit 1
}

# wait_for FILE PATTERN SECONDS WHAT PID: until FILE has a line matching PATTERN.
wait_for() {
    local file=$1 pattern=$2 limit=$3 what=$4 pid=$5
    local deadline=$((SECONDS + limit))
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "$what exited before it was ready"
        ((SECONDS < deadline)) || fail "timed out after ${limit} s waiting for $what"
        sleep 0.2
    done
}

# start NAME COMMAND...: runs it in the background, stdout to NAME.out, stderr to NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    LAST_PID=$!
}

step "checking the Python packages (slixmpp for Jabber, jwcrypto for Webex's encryption)"
if ! "$PYTHON" -c 'import slixmpp, jwcrypto' 2>/dev/null; then
    echo "$PYTHON lacks slixmpp or jwcrypto: pip install slixmpp jwcrypto (or set PYTHON)" >&2
    exit 3
fi
note "ok ($("$PYTHON" -c 'import slixmpp; print("slixmpp", slixmpp.__version__)'))"

if [[ -z "${HMSIM:-}" || -z "${CONNECTOR:-}" ]]; then
    step "building hmsim and the connector (cargo build --release)"
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release -p sim -p connector --bins) \
        || fail "cargo build failed or took over ${BUILD_TIMEOUT} s"
    HMSIM=${HMSIM:-$ROOT/target/release/hmsim}
    CONNECTOR=${CONNECTOR:-$ROOT/target/release/connector}
fi
note "hmsim:     $HMSIM"
note "connector: $CONNECTOR"

step "checking that the loopback ports are free: ${PORTS[*]}"
for port in "${PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "port $port is in use (another run of this script?); the configs use ${PORTS[*]}"
    fi
done
note "ok"

step "hmsim serve kms --config examples/real-mode/kms.yaml"
start kms "$HMSIM" serve kms --config "$HERE/kms.yaml"
wait_for "$WORK/kms.out" '^listening http ' "$READY_TIMEOUT" "hmsim serve kms" "$LAST_PID"
sed 's/^/    [kms] /' "$WORK/kms.out"

step "hmsim serve cloud --config examples/real-mode/cloud.yaml"
start cloud "$HMSIM" serve cloud --config "$HERE/cloud.yaml"
CLOUD_PID=$LAST_PID
wait_for "$WORK/cloud.out" '^listening http ' "$READY_TIMEOUT" "hmsim serve cloud" "$CLOUD_PID"
sed 's/^/    [cloud] /' "$WORK/cloud.out"
TOKEN=$(sed -n 's/^registration_token exp-a //p' "$WORK/cloud.out")
[[ -n "$TOKEN" ]] || fail "hmsim serve cloud printed no registration token for exp-a"

step "hmsim serve imp --config examples/real-mode/imp.yaml"
start imp "$HMSIM" serve imp --config "$HERE/imp.yaml"
wait_for "$WORK/imp.out" '^listening axl ' "$READY_TIMEOUT" "hmsim serve imp" "$LAST_PID"
sed 's/^/    [imp] /' "$WORK/imp.out"

step "connector --config connector.yaml (with the registration token the cloud printed)"
sed "s|^registration_token: .*|registration_token: $TOKEN|" "$HERE/connector.yaml" \
    >"$WORK/connector.yaml"
export CONNECTOR_LOG=${CONNECTOR_LOG:-info}
start connector "$CONNECTOR" --config "$WORK/connector.yaml"
CONNECTOR_PID=$LAST_PID
wait_for "$WORK/connector.log" 'waiting for Control Hub until' "$REGISTER_TIMEOUT" \
    "the connector's registration to be accepted" "$CONNECTOR_PID"
wait_for "$WORK/cloud.log" 'waiting for Control Hub until' "$READY_TIMEOUT" \
    "the cloud's registration line" "$CLOUD_PID"
grep -E 'connector starting|phase=|waiting for Control Hub' "$WORK/connector.log" \
    | sed 's/^/    [connector] /'
grep 'waiting for Control Hub' "$WORK/cloud.log" | sed 's/^/    [cloud] /'

step "talk.py: Bob on Jabber (slixmpp) and Alice on Webex (REST, WebSocket, jwcrypto)"
set +e
timeout "$((TALK_TIMEOUT + 10))" "$PYTHON" "$HERE/talk.py" --timeout "$TALK_TIMEOUT" \
    2>"$WORK/talk.log" | sed 's/^/    /'
TALK=${PIPESTATUS[0]}
set -e
for pid in "$CLOUD_PID" "$CONNECTOR_PID"; do
    kill -0 "$pid" 2>/dev/null || fail "a server exited during the conversation"
done
((TALK == 0)) || fail "talk.py failed (exit $TALK)"

step "the connector's progress log (it logs its status when it changes, at most once a second)"
wait_for "$WORK/connector.log" 'to_webex=[1-9][0-9]* to_jabber=[1-9]' "$READY_TIMEOUT" \
    "the connector to count both messages" "$CONNECTOR_PID"
grep -E 'connector status|registration accepted' "$WORK/connector.log" | sed 's/^/    [connector] /'
grep -E 'registration' "$WORK/cloud.log" | sed 's/^/    [cloud] /'

step "stopping the servers and the connector"
stop_all
note "done: a Jabber user and a Webex user talked through the real connector"
