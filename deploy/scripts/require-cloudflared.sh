#!/usr/bin/env bash
# Exits 0 when `cloudflared` is on PATH (the `tunnel` and `tunnel-quick` make targets need it); otherwise prints how to
# install it and exits 1. Override the command with CLOUDFLARED=/path/to/cloudflared.
set -euo pipefail

cloudflared="${CLOUDFLARED:-cloudflared}"
if command -v "$cloudflared" >/dev/null 2>&1; then
  exit 0
fi

cat >&2 <<EOF
'$cloudflared' is not installed (or not on PATH). Install Cloudflare's tunnel client, then run this again:

  Debian / Ubuntu (Cloudflare's package repository):
    sudo mkdir -p --mode=0755 /usr/share/keyrings
    curl -fsSL https://pkg.cloudflare.com/cloudflare-main.gpg | sudo tee /usr/share/keyrings/cloudflare-main.gpg >/dev/null
    echo 'deb [signed-by=/usr/share/keyrings/cloudflare-main.gpg] https://pkg.cloudflare.com/cloudflared any main' \\
      | sudo tee /etc/apt/sources.list.d/cloudflared.list
    sudo apt-get update && sudo apt-get install cloudflared

  macOS (Homebrew):
    brew install cloudflared

  Anything else (Windows, other Linux, a single binary or .deb/.rpm):
    https://github.com/cloudflare/cloudflared/releases/latest
    https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/
EOF
exit 1
