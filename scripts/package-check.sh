#!/usr/bin/env bash
# Issue 17's "done when": the crates meant for crates.io package (and build from their packaged
# sources alone); a new project made with the README's `cargo add` line, against the packaged
# crates, builds and runs the README's first example unchanged, and its second run is served
# from disk; and the README's first command (the `quickstart` example) finishes in bounded time,
# its second run from disk, and also when the cache cannot be used.
#
# Needs the network only for crates.io (the index and the crates the project depends on). Reuses
# CARGO_TARGET_DIR when set, else the workspace's target directory, so the dependencies are
# compiled once. Each example run is bounded by `timeout` (RUN_TIMEOUT seconds, 300 by default):
# a run that never ends is a failure, not a hung CI job.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

metadata=$(cargo metadata --no-deps --format-version 1)
target_dir=${CARGO_TARGET_DIR:-$(jq -r .target_directory <<<"$metadata")}
# Crates without `publish = false`: the library, the attribute and the CLI.
published=$(jq -r '.packages[] | select(.publish == null) | .name' <<<"$metadata" | sort)
unpublished=$(jq -r '.packages[] | select(.publish != null) | .name' <<<"$metadata" | sort)
echo "package-check: publishing $(echo $published); not published: $(echo $unpublished)"

# Each published crate ships the license texts, and they are the root's.
for name in $published; do
    dir=$(jq -r --arg n "$name" '.packages[] | select(.name == $n) | .manifest_path' <<<"$metadata" | xargs dirname)
    for license in LICENSE-MIT LICENSE-APACHE; do
        if ! cmp -s "$license" "$dir/$license"; then
            echo "package-check: $dir/$license is missing or differs from ./$license: copy it" >&2
            exit 1
        fi
    done
done

# The minimum supported Rust version: no dependency of the library (every feature on) may need a
# newer Rust than the library says it does. (Code newer than it is caught by clippy's
# incompatible_msrv lint for std APIs; only the current stable compiles it here.)
msrv=$(jq -r '.packages[] | select(.name == "memo-cache-rs") | .rust_version' <<<"$metadata")
deps=$(cargo tree --locked -p memo-cache-rs --all-features -e normal,build --prefix none -f '{p}' \
    | sed -E 's/ \(.*//; s/ v/@/' | sort -u)
newest=$(cargo metadata --locked --format-version 1 \
    | jq -r '.packages[] | select(.rust_version != null) | "\(.name)@\(.version) \(.rust_version)"' \
    | sort | join - <(echo "$deps") | sort -k2 -V | tail -1)
three_parts() { awk -F. '{ printf "%d.%d.%d\n", $1, $2, $3 }' <<<"$1"; }
if [ "$(printf '%s\n%s\n' "$(three_parts "${newest#* }")" "$(three_parts "$msrv")" | sort -V | tail -1)" \
    != "$(three_parts "$msrv")" ]; then
    echo "package-check: $newest needs a newer Rust than memo-cache-rs's rust-version $msrv" >&2
    exit 1
fi
echo "package-check: rust-version $msrv; the most demanding dependency: $newest"

# Packages and verifies them: each builds from its .crate alone, its siblings taken from cargo's
# local staging registry (cargo 1.90 and later), as they will be from crates.io. --allow-dirty:
# what is checked is the working tree, committed or not.
excludes=()
for name in $unpublished; do excludes+=(--exclude "$name"); done
# cargo unpacks the staged crates under $CARGO_HOME/registry/src/-<hash>/<name>-<version> and
# reuses such a directory when it is there: a copy left by an earlier run of the same version
# would be built instead of the crate just packaged. Our own crates' copies go first.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
for name in $published; do
    rm -rf "$cargo_home"/registry/src/-*/"$name"-[0-9]*
done
CARGO_TARGET_DIR=$target_dir cargo package --locked --allow-dirty --workspace "${excludes[@]}"

run_timeout=${RUN_TIMEOUT:-300}
# Runs a program, failing the check when it fails or runs longer than RUN_TIMEOUT seconds.
bounded() {
    local status=0
    timeout "$run_timeout" "$@" || status=$?
    if [ "$status" = 124 ]; then
        echo "package-check: $* did not finish within ${run_timeout}s" >&2
        exit 1
    elif [ "$status" != 0 ]; then
        echo "package-check: $* failed (exit status $status)" >&2
        exit 1
    fi
}
# Fails unless file $1 has a line matching the extended regex $2 (with $3 = no: has none).
expect() {
    local file=$1 pattern=$2 want=${3:-yes} found=no
    if grep -qE "$pattern" "$file"; then found=yes; fi
    if [ "$found" != "$want" ]; then
        local what="a line"
        [ "$want" = yes ] || what="no line"
        echo "package-check: expected $what matching /$pattern/ in:" >&2
        cat "$file" >&2
        exit 1
    fi
}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The README's first command: the `quickstart` example (a debug build here; the README runs it
# with --release), twice on a new cache, then with a cache that cannot be used, where it must
# still finish and say so on stderr.
CARGO_TARGET_DIR=$target_dir cargo build --quiet --locked -p memo-cache-rs --example quickstart \
    -p memo-cache-rs-cli
quickstart="$target_dir/debug/examples/quickstart"
cli="$target_dir/debug/memo-cache"
echo "package-check: the quickstart example, first run:"
MEMO_CACHE_DIR="$scratch/quickstart" bounded "$quickstart" >"$scratch/run1"
cat "$scratch/run1"
expect "$scratch/run1" '^fib\(150\): computed'
expect "$scratch/run1" '^prime_stats\(50000000\): computed'
echo "package-check: second run (a new process):"
MEMO_CACHE_DIR="$scratch/quickstart" bounded "$quickstart" >"$scratch/run2"
cat "$scratch/run2"
expect "$scratch/run2" '^fib\(150\): served from disk'
expect "$scratch/run2" '^prime_stats\(50000000\): served from disk'
expect "$scratch/run2" 'computed' no
echo "package-check: with MEMO_CACHE_DIR naming a file (no cache can be used):"
touch "$scratch/not-a-directory"
MEMO_CACHE_DIR="$scratch/not-a-directory" MEMO_CACHE_QUIET='' bounded "$quickstart" \
    >"$scratch/run3" 2>"$scratch/run3.err"
cat "$scratch/run3" "$scratch/run3.err"
expect "$scratch/run3" '^fib\(150\): computed \(151 bodies ran\)'
expect "$scratch/run3.err" '^memo-cache: warning: cannot use the cache in '

# A new project, made as the README says: `cargo new`, then the README's `cargo add` line as
# written. The packaged crates are not on crates.io yet, and `cargo add` does not look at
# [patch], so crates.io is replaced by a directory source: the packaged library and attribute,
# and, vendored, what they need from crates.io.
#
# No lock file is copied from the workspace: the dependencies are resolved afresh, to the newest
# compatible versions, as a user's `cargo add` resolves them. The workspace's Cargo.lock would
# pin what this workspace happened to test and hide a dependency release that breaks the
# library for a new user (a build error, a newer rust-version than the toolchain). The cost: a
# fresh resolution may compile some crates again, and a failure here can come from a crate
# released since the last change.
mkdir -p "$scratch/crates"
unpacked() {
    local version
    version=$(jq -r --arg n "$1" '.packages[] | select(.name == $n) | .version' <<<"$metadata")
    tar -xzf "$target_dir/package/$1-$version.crate" -C "$scratch/crates"
    echo "$scratch/crates/$1-$version"
}
library=$(unpacked memo-cache-rs)
macros=$(unpacked memo-cache-rs-macros)

# What the packaged library needs from crates.io, resolved afresh and vendored.
cargo new --quiet --vcs none --name seed "$scratch/seed"
cat >>"$scratch/seed/Cargo.toml" <<TOML
memo-cache-rs = { path = "$library" }
serde = { version = "1", features = ["derive"] }

[patch.crates-io]
memo-cache-rs-macros = { path = "$macros" }
TOML
(cd "$scratch/seed" && cargo vendor --quiet "$scratch/vendor" >/dev/null)
# The packaged crates join them as a directory source holds crates: unpacked, with a checksum.
for crate in "$library" "$macros"; do
    name=$(basename "$crate")
    cp -r "$crate" "$scratch/vendor/$name"
    sum=$(sha256sum "$target_dir/package/$name.crate" | cut -d' ' -f1)
    printf '{"files":{},"package":"%s"}' "$sum" >"$scratch/vendor/$name/.cargo-checksum.json"
done

cargo new --quiet --vcs none --name readme-example "$scratch/app"
mkdir -p "$scratch/app/.cargo"
cat >"$scratch/app/.cargo/config.toml" <<TOML
[source.crates-io]
replace-with = "packaged"

[source.packaged]
directory = "$scratch/vendor"
TOML
# The README's `cargo add` line, its first toml block and its first rust block, as they are.
add_line=$(grep -m1 -E '^cargo add ' README.md)
first_block() {
    awk -v lang="$1" '
        !inside && $0 == "```" lang { inside = 1; next }
        inside && $0 == "```" { exit }
        inside { print }
    ' README.md
}
first_block rust >"$scratch/app/src/main.rs"
if ! grep -q 'fn main' "$scratch/app/src/main.rs"; then
    echo "package-check: the README's first rust block has no fn main" >&2
    exit 1
fi
dependencies=$(first_block toml)
if ! grep -q '^\[dependencies\]' <<<"$dependencies"; then
    echo "package-check: the README's first toml block is not a [dependencies] table" >&2
    exit 1
fi
echo "package-check: in a new project: $add_line"
(cd "$scratch/app" && eval "$add_line")
cat "$scratch/app/Cargo.toml"
# What `cargo add` wrote agrees with the README's [dependencies] block: the same crates, and the
# features the block names.
for name in $(sed -nE 's/^([a-z0-9_-]+) = .*/\1/p' <<<"$dependencies"); do
    if ! grep -qE "^$name = " "$scratch/app/Cargo.toml"; then
        echo "package-check: '$add_line' did not add $name, which the README's [dependencies] name" >&2
        exit 1
    fi
done
if grep -q '"derive"' <<<"$dependencies" && ! grep -qE '^serde = .*"derive"' "$scratch/app/Cargo.toml"; then
    echo "package-check: '$add_line' did not turn on serde's derive feature" >&2
    exit 1
fi

(cd "$scratch/app" && CARGO_TARGET_DIR=$target_dir cargo build --quiet --offline)
binary="$target_dir/debug/readme-example"
export MEMO_CACHE_DIR="$scratch/cache"
echo "package-check: the README's example, first run:"
bounded "$binary" >"$scratch/app1"
cat "$scratch/app1"
expect "$scratch/app1" ': computed in '
echo "package-check: second run (a new process):"
bounded "$binary" >"$scratch/app2"
cat "$scratch/app2"
expect "$scratch/app2" ': served from disk in '
# And the cache agrees: prime_stats has one entry, hit once (by the second run).
"$cli" --dir "$MEMO_CACHE_DIR" --json ls >"$scratch/ls.json"
of_prime_stats() {
    jq -r "[.functions[] | select(.function | endswith(\"::prime_stats\")) | .$1] | add // 0" \
        "$scratch/ls.json"
}
if [ "$(of_prime_stats entries)" != 1 ] || [ "$(of_prime_stats hits)" != 1 ]; then
    echo "package-check: expected prime_stats with 1 entry hit once in $MEMO_CACHE_DIR:" >&2
    cat "$scratch/ls.json" >&2
    exit 1
fi
echo "package-check: ok"
