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
# The workspace build turns memo-cache's `tokio` feature on for every crate; this one test checks
# the attribute's error for an `async fn` without it, so it runs in a build of memo-cache alone.
cargo test -p memo-cache-rs --test ui_without_tokio "$@"
