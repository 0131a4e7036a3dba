#!/usr/bin/env bash
# Container health check: exits 0 when `GET /health` on the local callbridge answers 200, 1 otherwise.
# Needs only bash and coreutils (the runtime image has no curl). The port follows the server's own settings:
# CALLBRIDGE_PORT, else PORT, else 5050. HEALTHCHECK_TIMEOUT_S bounds the whole check (default 3).
set -uo pipefail

port="${CALLBRIDGE_PORT:-${PORT:-5050}}"
timeout_s="${HEALTHCHECK_TIMEOUT_S:-3}"

# A child bash opens the connection, sends a minimal HTTP/1.0 request and prints the status line. Its script is in
# single quotes on purpose: $1 and $line belong to the child.
# shellcheck disable=SC2016
status_line="$(
  timeout "$timeout_s" bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
    IFS= read -r line <&3 && printf "%s\n" "$line"
  ' healthcheck "$port" 2>/dev/null
)"
if [[ "$status_line" =~ ^HTTP/1\.[01]\ 200($|[[:space:]]) ]]; then
  exit 0
fi
echo "callbridge on port $port is not healthy: ${status_line:-no answer}" >&2
exit 1
