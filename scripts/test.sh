#!/usr/bin/env bash
# The whole test suite. The Redis tier's tests run real redis-server processes (a single server,
# a 3-node cluster and a TLS server on free loopback ports, the TLS one with a throwaway CA made
# by openssl), so redis-server, redis-tools and openssl are installed first when missing; the
# memcached tier's run real memcached processes, so memcached is too; the PostgreSQL tier's make
# their own clusters with initdb (one per test, on free loopback ports), so the postgresql
# package is too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 \
    || ! command -v openssl >/dev/null 2>&1; then
    echo "scripts/test.sh: installing redis-server, redis-tools and openssl (needed by the Redis tier tests)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools openssl >/dev/null
fi

# The memcached tier's tests start their own memcached processes on free loopback ports.
if ! command -v memcached >/dev/null 2>&1; then
    echo "scripts/test.sh: installing memcached (needed by the memcached tier tests)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq memcached >/dev/null
fi

# The PostgreSQL tier's tests run real servers: each test makes its own cluster with `initdb`
# in a temporary directory (as the `postgres` user when we are root) and stops it when done.
# They find the binaries through MEMO_TEST_PG_BIN, exported here, and fail (they do not skip)
# without them.
pg_bin=""
for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then pg_bin="$dir"; break; fi
done
if [ -z "$pg_bin" ]; then
    echo "scripts/test.sh: installing postgresql (needed by the PostgreSQL tier tests)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V -r | head -n 1)"
fi
export MEMO_TEST_PG_BIN="$pg_bin"

# A shared server as well, for anything that wants one URL (MEMO_TEST_POSTGRES_URL): a cluster
# in a temporary directory on a free loopback port, trust authentication on loopback, stopped
# and removed at exit.
pg_data="$(mktemp -d)"
pg_as=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$pg_data"
    pg_as=(runuser -u postgres --)
fi
pg_port=""
while [ -z "$pg_port" ]; do
    candidate=$((20000 + RANDOM % 30000))
    # Nothing answers there: free (the server's start fails loudly if it was taken meanwhile).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then pg_port=$candidate; fi
done
stop_postgres() {
    "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_data/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_data"
}
trap stop_postgres EXIT
"${pg_as[@]}" "$pg_bin/initdb" -N -A trust -U postgres -E UTF8 --locale=C -D "$pg_data/data" >/dev/null
"${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_data/data" -l "$pg_data/server.log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $pg_data/data" start >/dev/null
export MEMO_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"

cargo test --workspace "$@"
# The workspace build turns memo-cache-rs's `tokio` and `redis` features on for every crate (the
# end-to-end tests enable them), so the library's examples and its Redis tests are built and run
# above. This one test checks the attribute's error for an `async fn` without `tokio`, so it runs
# in a build of the library alone, with its default features (none).
cargo test -p memo-cache-rs --test ui_without_tokio "$@"
# A shared tier's URL in a build without that tier's feature: the workspace build has every
# tier's feature on, so these run in a build of the library alone too (above they compile to
# nothing).
cargo test -p memo-cache-rs --test tier_not_built "$@"
