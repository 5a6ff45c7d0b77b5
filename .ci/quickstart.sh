#!/usr/bin/env bash
# The README's quick start, as a new user runs it: a fresh clone, nothing installed (`make dev`
# creates .venv itself), no Redis or PostgreSQL configured (the embedded defaults), then
# `isograd-relay demo` must show a verified, delivered assessment.completed event.
# Usage: .ci/quickstart.sh   (from anywhere; tests what is committed on HEAD)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/quickstart-XXXXXX)"
CLONE="$WORK/isograd-relay"
DEV_PID=""
READY_TIMEOUT="${QUICKSTART_READY_TIMEOUT:-600}"  # the first `make dev` installs everything

# What a new user's shell has: none of CI's service URLs, no virtual environment.
unset REDIS_URL BROKER_URL DATABASE_URL TEST_DATABASE_URL RABBITMQ_URL ADMIN_TOKEN VIRTUAL_ENV
unset RELAY_CONFIG VAR_DIR PUBLIC_URL ISOGRAD_ENV ISOGRAD_CLIENT_ID ISOGRAD_CLIENT_SECRET

say() { echo "quickstart: $*"; }

cleanup() {
  if [[ -n "$DEV_PID" ]] && kill -0 "$DEV_PID" 2>/dev/null; then
    kill -TERM -- "-$DEV_PID" 2>/dev/null || true
    sleep 5
    kill -KILL -- "-$DEV_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 8000 8100; do
  port_free "$port" || { say "port $port is in use: the quick start needs 8000 and 8100"; exit 1; }
done

# The quick start's commands, read from the README so the two cannot drift apart: the first
# block after "## Quick start" must hold `make dev` and the demo command.
mapfile -t COMMANDS < <(awk '/^## Quick start/{q=1} q&&/^```/{n++; next} q&&n==1{print}' \
  "$ROOT/README.md" | sed -e 's/[[:space:]]*#.*$//' -e '/^[[:space:]]*$/d')
say "README commands: $(printf '[%s] ' "${COMMANDS[@]}")"
DEV_COMMAND="" DEMO_COMMAND=""
for command in "${COMMANDS[@]}"; do
  case "$command" in
    "make dev") DEV_COMMAND="$command" ;;
    *"isograd-relay demo"*) DEMO_COMMAND="$command" ;;
  esac
done
[[ -n "$DEV_COMMAND" && -n "$DEMO_COMMAND" ]] || {
  say "the README's quick start must show \`make dev\` and the demo command"; exit 1; }

git clone --quiet "$ROOT" "$CLONE"
cd "$CLONE"
[[ ! -e .venv ]] || { say "the fresh clone already has a .venv"; exit 1; }

started=$SECONDS
say "running \`$DEV_COMMAND\` in $CLONE"
setsid bash -c "$DEV_COMMAND" >"$WORK/dev.log" 2>&1 &
DEV_PID=$!

until curl -fsS -o /dev/null http://127.0.0.1:8000/readyz 2>/dev/null; do
  if ! kill -0 "$DEV_PID" 2>/dev/null; then
    say "\`$DEV_COMMAND\` exited before the relay was ready:"; tail -50 "$WORK/dev.log"; exit 1
  fi
  if (( SECONDS - started > READY_TIMEOUT )); then
    say "not ready after ${READY_TIMEOUT}s:"; tail -50 "$WORK/dev.log"; exit 1
  fi
  sleep 1
done
say "ready after $((SECONDS - started))s (install included)"

say "running \`$DEMO_COMMAND\`"
if ! bash -c "$DEMO_COMMAND" >"$WORK/demo.log" 2>&1; then
  say "the demo failed:"; cat "$WORK/demo.log"; say "dev log:"; tail -50 "$WORK/dev.log"; exit 1
fi
grep -q "received a verified assessment.completed" "$WORK/demo.log" || {
  say "the demo did not show the delivered event:"; cat "$WORK/demo.log"; exit 1; }
grep -q '"type": "assessment.completed"' "$WORK/demo.log" || {
  say "the demo did not print the event:"; cat "$WORK/demo.log"; exit 1; }
say "the demo event was delivered and verified"

# Ctrl-C, as the user stops it: the whole group gets SIGINT.
kill -INT -- "-$DEV_PID"
for _ in $(seq 1 60); do kill -0 "$DEV_PID" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$DEV_PID" 2>/dev/null; then say "dev did not stop after Ctrl-C"; exit 1; fi
DEV_PID=""
if pgrep -f "$CLONE/var/redis" >/dev/null; then
  say "an embedded redis-server is still running after Ctrl-C"; exit 1
fi
say "stopped cleanly; OK in $((SECONDS - started))s"
