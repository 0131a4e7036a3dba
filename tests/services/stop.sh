#!/usr/bin/env bash
# Stops what tests/services/start.sh started (make services-stop). Nothing running is fine. The data stays under
# target/services (`rm -rf target/services` after stopping forgets it; the next start makes a fresh cluster).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${CALLBRIDGE_SERVICES_DIR:-$root/target/services}"
# shellcheck source=tests/services/common.sh
. "$here/common.sh"

if pid_alive "$dir/redis/redis.pid"; then
  pid="$(cat "$dir/redis/redis.pid")"
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  echo "redis-server stopped"
else
  echo "redis-server was not running"
fi

data="$(pg_home "$dir")/data"
if pg_bin="$(find_pg_bin)" && [ -d "$data" ] && as_pg "$pg_bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
  as_pg "$pg_bin/pg_ctl" stop -D "$data" -m fast -w >/dev/null
  echo "PostgreSQL stopped"
else
  echo "PostgreSQL was not running"
fi
rm -f "$dir/env"
