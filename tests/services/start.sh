#!/usr/bin/env bash
# Starts the services the tests need, private to this checkout: a redis-server and a PostgreSQL cluster, both on
# loopback, under target/services. Then writes target/services/env, which the test steps of `make test` source:
#   export CALLBRIDGE_TEST_DATABASE_URL=postgres://callbridge_test:...@127.0.0.1:PORT/callbridge_test
#   export CALLBRIDGE_TEST_REDIS_URL=redis://127.0.0.1:PORT/
# Idempotent: a service already running from this directory is left as it is. `make services-stop` stops both.
#
# Needs redis-server (Debian: apt-get install redis-server) and the PostgreSQL server binaries, found in
# /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql) or on PATH. PostgreSQL refuses to run as root, so
# as root its commands run as the `postgres` user (runuser) in a directory that user owns.
#
# Settings (environment):
#   CALLBRIDGE_SERVICES_DIR          where everything lives (default: target/services of this checkout)
#   CALLBRIDGE_SERVICES_REDIS_PORT   redis-server's port (default 6479)
#   CALLBRIDGE_SERVICES_PG_PORT      PostgreSQL's port (default 5479)
# Neither service keeps anything worth keeping: Redis has no persistence, PostgreSQL runs with fsync off.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${CALLBRIDGE_SERVICES_DIR:-$root/target/services}"
redis_port="${CALLBRIDGE_SERVICES_REDIS_PORT:-6479}"
pg_port="${CALLBRIDGE_SERVICES_PG_PORT:-5479}"
pg_role="callbridge_test"
pg_database="callbridge_test"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# shellcheck source=tests/services/common.sh
. "$here/common.sh"

# --- Redis ----------------------------------------------------------------------------------------------------------
command -v redis-server >/dev/null 2>&1 || die "redis-server is missing: apt-get install redis-server"
command -v redis-cli >/dev/null 2>&1 || die "redis-cli is missing: apt-get install redis-tools"
redis_dir="$dir/redis"
mkdir -p "$redis_dir"
# A redis-server already started from this directory keeps its port (the one it was started with).
if pid_alive "$redis_dir/redis.pid" && [ -s "$redis_dir/port" ] \
  && redis-cli -h 127.0.0.1 -p "$(cat "$redis_dir/port")" ping 2>/dev/null | grep -q PONG; then
  redis_port="$(cat "$redis_dir/port")"
  echo "redis-server already running on 127.0.0.1:$redis_port (pid $(cat "$redis_dir/redis.pid"))"
else
  port_free "$redis_port" || die "port $redis_port is taken by another process; set CALLBRIDGE_SERVICES_REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
    --dir "$redis_dir" --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" \
    --save '' --appendonly no
  for _ in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG \
    || die "redis-server did not answer on 127.0.0.1:$redis_port; see $redis_dir/redis.log"
  echo "$redis_port" >"$redis_dir/port"
  echo "redis-server started on 127.0.0.1:$redis_port"
fi

# --- PostgreSQL -----------------------------------------------------------------------------------------------------
pg_bin="$(find_pg_bin)" || die "the PostgreSQL server binaries (initdb, pg_ctl) are missing: apt-get install postgresql"
command -v psql >/dev/null 2>&1 || die "psql is missing: apt-get install postgresql-client"
pg_dir="$(pg_home "$dir")"
data="$pg_dir/data"
password_file="$pg_dir/password"
mkdir -p "$pg_dir"
if [ ! -s "$password_file" ]; then
  (umask 077 && head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$password_file")
fi
password="$(cat "$password_file")"
if [ "$(id -u)" -eq 0 ]; then
  # The cluster belongs to `postgres`, who must be able to reach it: every directory above must be searchable.
  id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (apt-get install postgresql creates it)"
  chown postgres "$pg_dir"
  runuser -u postgres -- test -x "$pg_dir" \
    || die "the postgres user cannot reach $pg_dir (a directory above it is not searchable); set CALLBRIDGE_SERVICES_DIR"
  [ "$pg_dir" = "$dir/pg" ] || echo "PostgreSQL's cluster is in $pg_dir: the postgres user cannot reach $dir"
fi

if as_pg "$pg_bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
  # It keeps the port it was started with: the fourth line of postmaster.pid.
  pg_port="$(sed -n 4p "$data/postmaster.pid")"
  echo "PostgreSQL already running on 127.0.0.1:$pg_port from $data"
else
  if [ ! -s "$data/PG_VERSION" ]; then
    rm -rf "$data"
    # The superuser's password goes through a file only the owner can read.
    superuser_pw="$pg_dir/superuser.pw"
    (umask 077 && printf '%s\n' "$password" >"$superuser_pw")
    [ "$(id -u)" -eq 0 ] && chown postgres "$superuser_pw"
    as_pg "$pg_bin/initdb" -D "$data" -U postgres --pwfile="$superuser_pw" --auth=scram-sha-256 \
      --encoding=UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 || die "initdb failed; see $pg_dir/initdb.log"
    rm -f "$superuser_pw"
    cat >>"$data/postgresql.conf" <<CONF

# tests/services/start.sh: a private, disposable test cluster.
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = ''
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  port_free "$pg_port" || die "port $pg_port is taken by another process; set CALLBRIDGE_SERVICES_PG_PORT"
  # The port on the command line wins over postgresql.conf, so CALLBRIDGE_SERVICES_PG_PORT may change between runs.
  as_pg "$pg_bin/pg_ctl" start -D "$data" -w -t 60 -l "$pg_dir/postgresql.log" -o "-p $pg_port" >/dev/null \
    || die "PostgreSQL did not start; see $pg_dir/postgresql.log"
  echo "PostgreSQL started on 127.0.0.1:$pg_port"
fi

# The test role and its database, once. The role may create databases (a test may want a whole database of its own).
psql_super() {
  PGPASSWORD="$password" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres "$@"
}
ready=""
for _ in $(seq 1 100); do
  if psql_super -tAc 'SELECT 1' >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || die "PostgreSQL does not accept connections on 127.0.0.1:$pg_port; see $pg_dir/postgresql.log"
if [ "$(psql_super -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$pg_role'")" != "1" ]; then
  psql_super -c "CREATE ROLE $pg_role LOGIN CREATEDB PASSWORD '$password'"
fi
if [ "$(psql_super -tAc "SELECT 1 FROM pg_database WHERE datname = '$pg_database'")" != "1" ]; then
  psql_super -c "CREATE DATABASE $pg_database OWNER $pg_role"
fi

# --- The environment file -------------------------------------------------------------------------------------------
env_file="$dir/env"
(umask 077 && cat >"$env_file.tmp" <<ENV
# Written by tests/services/start.sh (make services). Source it: . $env_file
export CALLBRIDGE_TEST_DATABASE_URL=postgres://$pg_role:$password@127.0.0.1:$pg_port/$pg_database
export CALLBRIDGE_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/
ENV
)
mv "$env_file.tmp" "$env_file"
echo "Wrote $env_file"
