#!/usr/bin/env bash
# The whole test suite. The Redis tier's tests run real redis-server processes (a single server
# and a 3-node cluster on free loopback ports), so redis-server is installed first when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "scripts/test.sh: installing redis-server and redis-tools (needed by the Redis tier tests)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
fi

cargo test --workspace "$@"
