"""The Python contestants of the peers bench: joblib.Memory and diskcache's memoize, on the same
work as the Rust side, timed the same way (median of per-call samples). The Rust bench
(`benches/peers.rs`, section `python`) runs this with the interpreter that
`scripts/python-peers.sh` makes and reads the JSON it prints on its last line.

    python peers.py DIR --small-ops N --reps R --huge-reps H --processes P --sections a,b,..

Sections: small (warm hit over 1,000 keys; miss + store), fresh (open + first hit in a new
process), bytes (100 MB), floats (10^6 float64), huge (10^8 float64, 800 MB).

Every figure is in seconds. The work is a function of one integer that hands back a value made
beforehand, so a miss costs the store alone and a hit the lookup and the load. The 100 MB value
is a numpy uint8 array, joblib's best case (its arrays are written and read raw, not pickled).

Fresh process: a new interpreter per sample; the imports are done before the clock starts, so
"inside" is the open of the cache plus the first hit, like the Rust row; "wall" is spawn to exit
as the parent sees it (the interpreter's start and the imports included).
"""

import json
import os
import subprocess
import sys
import time

import diskcache
import joblib
import numpy as np

PRELOADED = 1000


def small(i):
    return {"id": i, "name": f"item-{i:08}", "score": i * 0.25, "tags": [1, 2, 3, i]}


COMPUTED = [0]


def small_fn(i):
    """The small function of the fresh-process case: parent and children cache this one."""
    COMPUTED[0] += 1
    return small(i)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def memoized(tool, location, f):
    """f cached by `tool` under `location`; also returns the object to close."""
    if tool == "joblib":
        return joblib.Memory(location, verbose=0).cache(f), None
    cache = diskcache.Cache(location)
    return cache.memoize()(f), cache


def timed(f, *args):
    start = time.perf_counter()
    out = f(*args)
    took = time.perf_counter() - start
    del out
    return took


def small_cases(tool, root, ops):
    computed = [0]

    def make(i):
        computed[0] += 1
        return small(i)

    cached, closer = memoized(tool, os.path.join(root, f"small-{tool}"), make)
    for i in range(PRELOADED):
        cached(i)
    n = 0
    warm = time.perf_counter()
    # The same 20 ms warm-up as the Rust side, then steady-state hits.
    while time.perf_counter() - warm < 0.02:
        n = (n + 1) % PRELOADED
        cached(n)
    before = computed[0]
    hits = []
    for _ in range(ops):
        n = (n + 1) % PRELOADED
        hits.append(timed(cached, n))
    assert computed[0] == before, "a warm hit computed"
    stores = [timed(cached, 1_000_000 + j) for j in range(ops)]
    assert computed[0] == before + ops
    if closer is not None:
        closer.close()
    return {"small hit": median(hits), "small miss + store": median(stores)}


def fresh_cases(tool, root, processes):
    location = os.path.join(root, f"fresh-{tool}")
    cached, closer = memoized(tool, location, small_fn)
    cached(1)
    if closer is not None:
        closer.close()
    inside, wall = [], []
    for _ in range(processes):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--child", tool, location],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        wall.append(time.perf_counter() - start)
        took, computed = out.split()
        assert computed == "0", "the first hit of a fresh process computed"
        inside.append(float(took))
    return {
        "fresh process: open + 1 hit (inside)": median(inside),
        "fresh process: spawn to exit": median(wall),
    }


def fresh_child(tool, location):
    start = time.perf_counter()
    cached, _ = memoized(tool, location, small_fn)
    out = cached(1)
    took = time.perf_counter() - start
    assert out == small(1)
    print(took, COMPUTED[0])


def large_cases(tool, root, label, value, reps):
    location = os.path.join(root, f"{label}-{tool}")

    def make(seed):
        return value

    cached, closer = memoized(tool, location, make)
    cached(0)  # the warm-up store, as on the Rust side
    stores = [timed(cached, seed) for seed in range(1, reps + 1)]
    cached(0)  # the warm-up hit
    hits = []
    for _ in range(reps):
        start = time.perf_counter()
        out = cached(0)
        hits.append(time.perf_counter() - start)
        assert out.nbytes == value.nbytes
        del out
    if closer is not None:
        closer.close()
    subprocess.run(["rm", "-rf", location], check=True)
    return {f"{label} store": median(stores), f"{label} hit": median(hits)}


def main():
    args = sys.argv[1:]
    if args[0] == "--child":
        fresh_child(args[1], args[2])
        return
    root = args[0]
    opt = {args[i].lstrip("-"): args[i + 1] for i in range(1, len(args) - 1, 2)}
    ops, reps = int(opt["small-ops"]), int(opt["reps"])
    huge_reps, processes = int(opt["huge-reps"]), int(opt["processes"])
    sections = opt["sections"].split(",")
    results = {"versions": {"python": sys.version.split()[0], "joblib": joblib.__version__,
                            "diskcache": diskcache.__version__, "numpy": np.__version__}}
    for tool in ["joblib", "diskcache"]:
        r = {}
        if "small" in sections:
            r.update(small_cases(tool, root, ops))
        if "fresh" in sections:
            r.update(fresh_cases(tool, root, processes))
        if "bytes" in sections:
            value = np.random.default_rng(0).integers(0, 256, 100_000_000, dtype=np.uint8)
            r.update(large_cases(tool, root, "100 MB Vec<u8>", value, reps))
            del value
        if "floats" in sections:
            value = np.arange(1_000_000, dtype=np.float64) * 0.001 - 7.0
            r.update(large_cases(tool, root, "Vec<f64> 10^6", value, reps))
        if "huge" in sections:
            value = np.arange(100_000_000, dtype=np.float64) * 0.001 - 7.0
            r.update(large_cases(tool, root, "Vec<f64> 10^8", value, huge_reps))
            del value
        results[tool] = r
        print(f"python peers: {tool} done", file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
