#!/usr/bin/env bash
# The whole test suite. The Redis tier's tests run real redis-server processes (a single server,
# a 3-node cluster and a TLS server on free loopback ports, the TLS one with a throwaway CA made
# by openssl), so redis-server, redis-tools and openssl are installed first when missing.
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

cargo test --workspace "$@"
# The workspace build turns memo-cache-rs's `tokio` and `redis` features on for every crate (the
# end-to-end tests enable them), so the library's examples and its Redis tests are built and run
# above. This one test checks the attribute's error for an `async fn` without `tokio`, so it runs
# in a build of the library alone, with its default features (none).
cargo test -p memo-cache-rs --test ui_without_tokio "$@"
