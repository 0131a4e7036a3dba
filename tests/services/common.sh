# Helpers shared by tests/services/start.sh and stop.sh (sourced, not run).

die() {
  echo "make services: $*" >&2
  exit 1
}

# True when the pid file names a running process.
pid_alive() {
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# True when nothing listens on 127.0.0.1:$1 (bash's /dev/tcp: a refused connection means free).
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The directory of the newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/N/bin, else PATH.
find_pg_bin() {
  local candidate
  for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
      echo "$candidate"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

# Runs a PostgreSQL server command: as the `postgres` user when we are root (the server refuses root), else as we are.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Where the PostgreSQL cluster lives: $1/pg, unless we are root and the `postgres` user cannot reach $1 (a checkout
# under /root, whose mode is 0700): then a directory of its own under /tmp, named after $1 so that each checkout keeps
# its one cluster and stop.sh finds it again.
pg_home() {
  if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test -x "$1" 2>/dev/null; then
    echo "$1/pg"
  else
    echo "${TMPDIR:-/tmp}/callbridge-services-pg-$(printf '%s' "$1" | cksum | cut -d' ' -f1)"
  fi
}
