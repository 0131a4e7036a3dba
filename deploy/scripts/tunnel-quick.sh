#!/usr/bin/env bash
# A Cloudflare quick tunnel (https://<random words>.trycloudflare.com, no account needed) to the local callbridge, and
# the two things to do with its URL: the Twilio voice webhook to paste and the PUBLIC_URL line for .env.
#
#   deploy/scripts/tunnel-quick.sh [PORT]     run `cloudflared tunnel --url http://localhost:PORT` (PORT: 5050, or $PORT)
#   deploy/scripts/tunnel-quick.sh --parse    read cloudflared's output on stdin instead (e.g. `docker compose logs`);
#                                             print the same lines for the first tunnel URL, exit 1 if there is none
#
# cloudflared logs the URL on stderr inside a box (cmd/cloudflared/tunnel/quick_tunnel.go):
#   2026-11-21T11:40:02Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |
#   2026-11-21T11:40:02Z INF |  https://quiet-forest-lamp-river.trycloudflare.com                                       |
# Its other lines at INF level are hidden; warnings, errors and anything else pass through to stderr. VERBOSE=1 shows
# every line. The quick tunnel's hostname changes every time it starts: update PUBLIC_URL and the webhook each time.
set -euo pipefail
shopt -s extglob

# The API cloudflared asks for a quick tunnel; its URL shows up in error lines and is never the tunnel's own.
readonly QUICK_TUNNEL_API="https://api.trycloudflare.com"
readonly WEBHOOK_PATH="/incoming-call"

# Prints the quick tunnel URL found in one line of cloudflared output (colours and all), or nothing.
tunnel_url_in() {
  local line="${1//$'\e['*([0-9;])m/}" rest candidate
  rest="$line"
  while [[ "$rest" =~ https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.trycloudflare\.com ]]; do
    candidate="${BASH_REMATCH[0]}"
    if [[ "$candidate" != "$QUICK_TUNNEL_API" ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
    rest="${rest#*"${BASH_REMATCH[0]}"}"
  done
  return 0
}

# What to do with the URL, on stdout.
# In `parse` mode the output usually comes from `docker compose logs`, where callbridge takes its URL from the tunnel's
# forwarded headers: PUBLIC_URL stays empty there, as README's compose section says.
print_instructions() {
  local url="$1" mode="$2"
  cat <<EOF

Quick tunnel is up. Its URL changes every time the tunnel starts.

  Twilio voice webhook (Console > Phone Numbers > your number > "A call comes in": Webhook, HTTP POST):
    ${url}${WEBHOOK_PATH}

EOF
  if [[ "$mode" == parse ]]; then
    cat <<EOF
  Under docker compose (deploy/compose.yaml) leave PUBLIC_URL empty in .env: callbridge takes this URL from the
  tunnel's forwarded headers. Running callbridge without compose, put this line in .env and restart it:
    PUBLIC_URL=${url}

EOF
  else
    cat <<EOF
  Put this line in .env, then (re)start \`make dev\`:
    PUBLIC_URL=${url}

EOF
  fi
}

# Reads cloudflared output from stdin; prints the instructions for the first tunnel URL. In `live` mode also passes the
# interesting lines through to stderr. Exits 0 when a URL was seen, 1 otherwise.
watch_output() {
  local mode="$1" found="" line url
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ -z "$found" ]]; then
      url="$(tunnel_url_in "$line")"
      if [[ -n "$url" ]]; then
        found="$url"
        print_instructions "$url" "$mode"
        continue
      fi
    fi
    if [[ "$mode" == live ]] && { [[ "${VERBOSE:-0}" == 1 ]] || [[ "$line" != *" INF "* ]]; }; then
      printf '%s\n' "$line" >&2
    fi
  done
  [[ -n "$found" ]]
}

if [[ "${1:-}" == "--parse" ]]; then
  if ! watch_output parse; then
    echo "no https://*.trycloudflare.com tunnel URL in the input" >&2
    exit 1
  fi
  exit 0
fi

port="${1:-${PORT:-5050}}"
if [[ ! "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
  echo "usage: $0 [PORT] | --parse   (PORT must be 1-65535, got '$port')" >&2
  exit 2
fi

bash "$(dirname "$0")/require-cloudflared.sh"
cloudflared="${CLOUDFLARED:-cloudflared}"

echo "Starting a Cloudflare quick tunnel to http://localhost:${port} (Ctrl-C stops it)..." >&2
set +e
"$cloudflared" tunnel --no-autoupdate --url "http://localhost:${port}" 2>&1 | watch_output live
statuses=("${PIPESTATUS[@]}")
set -e
if ((statuses[1] != 0)); then
  cat >&2 <<EOF
cloudflared exited (status ${statuses[0]}) before printing a trycloudflare.com URL. Run it by hand to see everything:
  VERBOSE=1 $0 ${port}
Quick tunnels do not start when ~/.cloudflared/config.yml (or config.yaml) exists: move it aside, or use \`make tunnel\`.
EOF
  exit 1
fi
exit "${statuses[0]}"
