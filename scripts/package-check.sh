#!/usr/bin/env bash
# Issue 17's "done when": the crates meant for crates.io package (and build from their packaged
# sources alone), and a new project that depends on the packaged library builds and runs the
# README's first example unchanged, with the README's `[dependencies]`.
#
# Needs the network only for crates.io (the index and the crates the project depends on). Reuses
# CARGO_TARGET_DIR when set, else the workspace's target directory, so the dependencies are
# compiled once.
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
CARGO_TARGET_DIR=$target_dir cargo package --locked --allow-dirty --workspace "${excludes[@]}"

# A new project beside nothing: the README's dependencies, the packaged crates in place of the
# registry's (they are not published yet), the workspace's lock file as a starting point so the
# same dependency versions are used (and already compiled).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/app/src" "$scratch/crates"
unpacked() {
    local version
    version=$(jq -r --arg n "$1" '.packages[] | select(.name == $n) | .version' <<<"$metadata")
    tar -xzf "$target_dir/package/$1-$version.crate" -C "$scratch/crates"
    echo "$scratch/crates/$1-$version"
}
library=$(unpacked memo-cache-rs)
macros=$(unpacked memo-cache-rs-macros)

# The first ```toml and ```rust blocks of the README, as they are.
first_block() {
    awk -v lang="$1" '
        !inside && $0 == "```" lang { inside = 1; next }
        inside && $0 == "```" { exit }
        inside { print }
    ' README.md
}
dependencies=$(first_block toml)
if ! grep -q '^\[dependencies\]' <<<"$dependencies"; then
    echo "package-check: the README's first toml block is not a [dependencies] table" >&2
    exit 1
fi
first_block rust >"$scratch/app/src/main.rs"
if ! grep -q 'fn main' "$scratch/app/src/main.rs"; then
    echo "package-check: the README's first rust block has no fn main" >&2
    exit 1
fi
cat >"$scratch/app/Cargo.toml" <<EOF
[package]
name = "readme-example"
version = "0.0.0"
edition = "2024"
publish = false

$dependencies

[patch.crates-io]
memo-cache-rs = { path = "$library" }
memo-cache-rs-macros = { path = "$macros" }
EOF
cp Cargo.lock "$scratch/app/Cargo.lock"

cd "$scratch/app"
CARGO_TARGET_DIR=$target_dir cargo build --quiet
binary="$target_dir/debug/readme-example"
export MEMO_CACHE_DIR="$scratch/cache"
echo "package-check: the README's example, first run:"
"$binary"
echo "package-check: second run (a new process):"
"$binary"
if [ ! -f "$MEMO_CACHE_DIR/index.sqlite3" ]; then
    echo "package-check: the example stored nothing in $MEMO_CACHE_DIR" >&2
    exit 1
fi
echo "package-check: ok"
