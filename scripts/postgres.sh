#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (CI and developers).
#
#   scripts/postgres.sh install       apt-get install postgresql unless initdb is already there
#   scripts/postgres.sh start [DIR]   initdb a cluster in DIR (default: a new temporary directory),
#                                     listening on 127.0.0.1 only, on a free port; wait until it
#                                     accepts connections; print `export PG...=...` for `eval`
#   scripts/postgres.sh stop [DIR]    stop the cluster and delete what `start` created in DIR
#                                     (DIR defaults to $PG_CLUSTER_DIR, which `start` exports)
#   scripts/postgres.sh bindir        print the directory of the PostgreSQL binaries ($PG_BINDIR, else
#                                     /usr/lib/postgresql/*/bin, else initdb's on PATH); exit 1 if none
#
# `eval "$(scripts/postgres.sh start)"` sets PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE (the
# libpq names, read by psql and by the tests) and PG_CLUSTER_DIR. The user may create databases
# (each test file makes its own) and signs in with a random password (scram-sha-256) over TCP.
# Run as root, the cluster belongs to the `postgres` system user (PostgreSQL refuses root);
# otherwise to the current user. Everything but the export lines goes to stderr.
# Both `start DIR` and `stop DIR` may be run twice: the second `start` prints the same exports
# (restarting the cluster if it had stopped), the second `stop` does nothing.
set -Eeuo pipefail

readonly marker=".effect-task-host-postgres"
readonly role="effect_task_host"
bin=""
# set while `start` is making a cluster, so that a failure (or Ctrl-C) removes it again
pending_dir=""
pending_created=""

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# $PG_BINDIR if set, else the newest /usr/lib/postgresql/*/bin (Debian), else where initdb on PATH is.
bindir() {
  if [[ -n "${PG_BINDIR:-}" ]]; then
    [[ -x "$PG_BINDIR/initdb" ]] || die "PG_BINDIR=$PG_BINDIR has no initdb"
    printf '%s\n' "$PG_BINDIR"
    return
  fi
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$found" ]]; then
    dirname "$found"
  elif command -v initdb >/dev/null; then
    # through symlinks, to the directory that holds pg_ctl, pg_isready and psql as well
    dirname "$(readlink -f "$(command -v initdb)")"
  else
    return 1
  fi
}

install() {
  if bindir >/dev/null; then
    log "PostgreSQL is installed ($(bindir))"
    return
  fi
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and there is no apt-get: install it (initdb, pg_ctl, pg_isready, psql) with your package manager"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "installing PostgreSQL needs root (or sudo)"
    sudo=(sudo)
  fi
  log "installing postgresql with apt-get"
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  bindir >/dev/null || die "apt-get installed postgresql but no initdb was found under /usr/lib/postgresql/*/bin"
  log "PostgreSQL is installed ($(bindir))"
}

# As root, run as the postgres system user; otherwise as ourselves.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A TCP port on 127.0.0.1 that nothing accepts connections on (a race with another process is
# still possible: `start` retries with another port if the server cannot bind).
free_port() {
  local port tries
  for tries in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return
    fi
  done
  die "found no free TCP port on 127.0.0.1 after $tries tries"
}

# One value of DIR/settings (lines `PGPORT=...`), written by `start`.
setting() { sed -n "s/^$2=//p" "$1/settings"; }

exports() {
  local dir="$1" name
  printf 'export PGHOST=127.0.0.1'
  for name in PGPORT PGUSER PGPASSWORD PGDATABASE; do printf ' %s=%s' "$name" "$(setting "$dir" "$name")"; done
  printf '\nexport PG_CLUSTER_DIR=%q\n' "$dir"
}

running() {
  local dir="$1"
  [[ -f "$dir/data/postmaster.pid" ]] && as_owner "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

# Start the server on a free port (retrying if the port was taken meanwhile) and record it.
launch() {
  local dir="$1" port attempt seen waited
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    seen=0
    if [[ -f "$dir/server.log" ]]; then seen="$(wc -l < "$dir/server.log")"; fi
    if as_owner "$bin/pg_ctl" start -w -t 60 -D "$dir/data" -l "$dir/server.log" \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir/socket" >/dev/null 2>&1; then
      as_owner sed -i "s/^PGPORT=.*/PGPORT=$port/" "$dir/settings"
      for waited in $(seq 1 120); do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
          return
        fi
        sleep 0.5
      done
      die "the server started but does not accept connections on 127.0.0.1:$port; see $dir/server.log"
    fi
    if ! tail -n "+$((seen + 1))" "$dir/server.log" 2>/dev/null | grep -q "could not bind\|could not create any TCP/IP sockets"; then
      tail -n "+$((seen + 1))" "$dir/server.log" >&2 2>/dev/null || true
      die "the server did not start; see $dir/server.log"
    fi
    log "port $port was taken meanwhile (attempt $attempt); trying another"
  done
  die "the server could not bind a port after 5 attempts; see $dir/server.log"
}

start() {
  bin="$(bindir)" || die "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH): run scripts/postgres.sh install, or set PG_BINDIR"
  local dir="${1:-}"
  if [[ -z "$dir" ]]; then
    dir="$(mktemp -d "${TMPDIR:-/tmp}/effect-task-host-pg.XXXXXX")"
    pending_created="$dir"
  fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd -P)"
  [[ "$dir" != *[[:space:]\'\"]* ]] || die "$dir: the cluster's directory must not contain spaces or quotes"
  # The server's socket path must fit in sun_path (107 bytes).
  (( ${#dir} <= 80 )) || die "$dir is too long for a socket directory (at most 80 characters)"

  if [[ -f "$dir/$marker" ]]; then
    if running "$dir"; then
      log "already running in $dir"
    else
      log "restarting the cluster in $dir"
      launch "$dir"
    fi
    exports "$dir"
    return
  fi
  [[ -z "$(ls -A "$dir")" ]] || die "$dir is neither empty nor a cluster made by this script: refusing to use it"

  pending_dir="$dir"
  if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres system user (Debian's postgresql package creates it)"
    chown postgres: "$dir"
    chmod 700 "$dir"
    runuser -u postgres -- test -w "$dir" || die "the postgres user cannot write $dir (is a parent directory closed to it?)"
  fi
  local password port
  password="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  as_owner touch "$dir/$marker"
  as_owner mkdir -m 700 "$dir/socket"
  as_owner sh -c 'umask 077 && printf "%s\n" "$1" > "$2"' sh "$password" "$dir/password"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$dir/password" >/dev/null
  as_owner rm "$dir/password"
  as_owner sh -c 'umask 077 && printf "PGPORT=\nPGUSER=%s\nPGPASSWORD=%s\nPGDATABASE=%s\n" "$1" "$2" "$1" > "$3"' \
    sh "$role" "$password" "$dir/settings"
  launch "$dir"
  port="$(setting "$dir" PGPORT)"
  as_owner "$bin/psql" -q -X -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$port" -U postgres -d postgres >/dev/null <<SQL
CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE $role OWNER $role;
SQL
  pending_dir=""
  pending_created=""
  log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
  exports "$dir"
}

# Undo a `start` that did not finish.
on_exit() {
  local status=$?
  if [[ -n "$pending_dir" && -f "$pending_dir/$marker" ]]; then
    (stop "$pending_dir") >/dev/null 2>&1 || true
  fi
  if [[ -n "$pending_created" ]]; then
    rm -rf "$pending_created"
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

stop() {
  local dir="${1:-${PG_CLUSTER_DIR:-}}"
  [[ -n "$dir" ]] || die "stop: which cluster? give its directory (or set PG_CLUSTER_DIR)"
  if [[ ! -d "$dir" ]]; then
    log "nothing to stop: $dir does not exist"
    return
  fi
  [[ -f "$dir/$marker" ]] || die "$dir was not made by scripts/postgres.sh start: refusing to touch it"
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    bin="$(bindir)" || die "PostgreSQL binaries not found: cannot stop the server in $dir"
    as_owner "$bin/pg_ctl" stop -w -t 60 -m fast -D "$dir/data" >/dev/null 2>&1 || true
    if running "$dir"; then
      die "the server in $dir did not stop"
    fi
  fi
  rm -rf "$dir/data" "$dir/socket" "$dir/settings" "$dir/password" "$dir/server.log" "$dir/$marker"
  rmdir "$dir" 2>/dev/null || log "left $dir in place: it holds other files"
  log "stopped and removed the cluster in $dir"
}

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

command="${1:-}"
shift || true
case "$command" in
  install) install ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  bindir) bindir || die "PostgreSQL is not installed" ;;
  *) usage ;;
esac
