#!/usr/bin/env python3
"""Opens .npz files with numpy.load and prints their keys, dtypes and shapes.

Used to confirm that files knowtrace writes are ones numpy reads.

  python3 tests/reference/check_npz.py FILE.npz [FILE.npz ...]
  python3 tests/reference/check_npz.py --expect EXPECTED.json FILE.npz

--expect compares the (single) file with a JSON object {key: {"dtype": ...,
"shape": [...], "values": [...] (C order)}}; test_npz writes such a sidecar
next to the files it leaves in <build>/test_npz_out/. Float values compare
exactly (JSON carries doubles exactly); strings compare as Unicode.

Exits 0 when every file opens (and matches), 1 otherwise.
"""
import argparse
import json
import sys

import numpy as np


def describe(arr):
    return f"{arr.dtype.str:>6} shape={arr.shape}"


def same(want, got):
    if isinstance(want, float):
        return float(got) == want or (want != want and got != got)
    if isinstance(want, bool):
        return bool(got) == want
    if isinstance(want, int):
        return int(got) == want
    return str(got) == want


def check(path, expect):
    ok = True
    with np.load(path, allow_pickle=False) as z:
        print(path)
        for key in z.files:
            arr = z[key]
            print(f"  {key:24s} {describe(arr)}")
            if expect is None:
                continue
            if key not in expect:
                print(f"    unexpected key {key!r}")
                ok = False
                continue
            e = expect[key]
            if arr.dtype.str != e["dtype"] or list(arr.shape) != e["shape"]:
                print(f"    mismatch: expected {e['dtype']} {tuple(e['shape'])}")
                ok = False
                continue
            flat = arr.reshape(-1)
            if len(flat) != len(e["values"]) or not all(
                    same(w, g) for w, g in zip(e["values"], flat.tolist())):
                print("    values differ")
                ok = False
        if expect is not None:
            for key in expect:
                if key not in z.files:
                    print(f"  missing key {key!r}")
                    ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expect", help="JSON file with expected dtypes, shapes and values")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    expect = None
    if args.expect:
        with open(args.expect) as f:
            expect = json.load(f)
        if len(args.files) != 1:
            ap.error("--expect takes exactly one file")
    failed = 0
    for path in args.files:
        try:
            if not check(path, expect):
                failed += 1
        except Exception as exc:  # numpy raises many kinds on bad files
            print(f"{path}: FAILED: {type(exc).__name__}: {exc}")
            failed += 1
    if failed:
        print(f"{failed} of {len(args.files)} file(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
