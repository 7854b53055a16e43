#!/usr/bin/env bash
# The PostgreSQL cluster the tests share (tests/common/pg.rs starts it on first use and
# leaves it running for the next run). Usage:
#   tests/pg.sh status   is it running, on which port
#   tests/pg.sh stop     stop it (the next test run starts it again)
#   tests/pg.sh clean    stop it and delete its directory (the next run makes a new one)
#   tests/pg.sh psql     a psql shell on its postgres database
# Honours POSTHORN_TEST_PG_DIR and POSTHORN_TEST_PG_BIN as the tests do; the directory
# is otherwise <target>/tmp/pg.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${POSTHORN_TEST_PG_DIR:-${CARGO_TARGET_DIR:-target}/tmp/pg}"
data="$dir/server/data"
bin="${POSTHORN_TEST_PG_BIN:-}"
if [ -z "$bin" ]; then
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$bin" ] || bin="$(dirname "$(command -v pg_ctl)")"
fi

# pg_ctl refuses root: run it as the owner of the data directory.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        local owner
        owner="$(stat -c %U "$data")"
        setpriv --reuid="$owner" --regid="$(stat -c %g "$data")" --clear-groups -- "$@"
    else
        "$@"
    fi
}

running() { [ -f "$data/postmaster.pid" ] && as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; }

case "${1:-status}" in
status)
    if [ -d "$data" ] && running; then
        echo "running on 127.0.0.1:$(cat "$dir/port") (data in $data)"
    else
        echo "not running"
    fi
    ;;
stop)
    if [ -d "$data" ] && running; then
        as_owner "$bin/pg_ctl" stop -D "$data" -m fast -t 60 >/dev/null
        echo "stopped"
    else
        echo "not running"
    fi
    ;;
clean)
    "$0" stop
    rm -rf "$dir"
    echo "removed $dir"
    ;;
psql)
    exec env PGPASSWORD="$(cat "$dir/password")" "$bin/psql" -h 127.0.0.1 -p "$(cat "$dir/port")" -U postgres postgres
    ;;
*)
    echo "usage: tests/pg.sh status|stop|clean|psql" >&2
    exit 2
    ;;
esac
