#!/usr/bin/env bash
# Runs the named Cloudflare tunnel described by a cloudflared config file (default deploy/cloudflared/config.yml):
#   cloudflared tunnel --config CONFIG run
# Refuses to start while the file still holds the placeholders, and says what to fill in.
set -euo pipefail

config="${1:-deploy/cloudflared/config.yml}"
if [[ ! -f "$config" ]]; then
  echo "no cloudflared config at $config" >&2
  exit 1
fi
if grep -v '^[[:space:]]*#' "$config" | grep -q 'REPLACE-WITH-'; then
  cat >&2 <<EOF
$config still has placeholders (REPLACE-WITH-...). Create the tunnel and fill them in first:
  cloudflared tunnel login                                   # once: lets this machine manage your Cloudflare zone
  cloudflared tunnel create callbridge                       # prints the tunnel UUID, writes ~/.cloudflared/UUID.json
  cloudflared tunnel route dns callbridge voice.example.com  # the hostname Twilio will call
Then set tunnel, credentials-file and hostname in it (or copy it and run: make tunnel TUNNEL_CONFIG=your.yml).
EOF
  exit 1
fi

bash "$(dirname "$0")/require-cloudflared.sh"
exec "${CLOUDFLARED:-cloudflared}" tunnel --config "$config" run
