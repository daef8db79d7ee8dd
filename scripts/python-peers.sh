#!/usr/bin/env bash
# The Python peers the benchmarks measure memo-cache against (joblib, numpy, diskcache), in a
# virtual environment of their own from PyPI. Prints the environment's python on the last line.
#
#   scripts/python-peers.sh [VENV_DIR]
#
# VENV_DIR defaults to $CARGO_TARGET_DIR/python-peers, or target/python-peers in the repository.
# Run again at will: an environment that already has the packages is left as it is.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-${CARGO_TARGET_DIR:-$repo/target}/python-peers}"

if ! "$venv/bin/python" -c "import joblib, numpy, diskcache" >/dev/null 2>&1; then
    echo "python-peers: creating $venv (joblib, numpy, diskcache from PyPI)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check joblib numpy diskcache >&2
fi
"$venv/bin/python" -c "import joblib, numpy; print('python-peers: joblib', joblib.__version__, 'numpy', numpy.__version__)" >&2
echo "$venv/bin/python"
