#!/usr/bin/env python3
"""Golden draws of numpy.random.RandomState (the legacy generator).

knowtrace's kt::NumpyRandomState must reproduce these bit for bit: ROME's
corruption noise is numpy.random.RandomState(1).randn(S, e - b, d).

Each case seeds a fresh RandomState, runs a list of operations on it and
concatenates everything they return, in order and in C order, into one
little-endian float64 file. index.json lists the cases and their operations:

  {"op": "randn", "n": N}                      rs.randn(N)            (also "shape": [...])
  {"op": "standard_normal", "n": N}            rs.standard_normal(N)
  {"op": "random_sample", "n": N}              rs.random_sample(N)
  {"op": "uniform", "n": N, "low": a, "high": b}  rs.uniform(a, b, N)
  {"op": "raw", "n": N}                        raw 32-bit MT19937 outputs, as float64

Calls with n == 1 are made as scalar calls (rs.randn(), rs.uniform(a, b)), so
the Gaussian cache is exercised both ways.

Usage: python3 tests/reference/make_noise_goldens.py [OUT_DIR]
(default OUT_DIR: tests/fixtures/noise next to this script's repository).
"""
import json
import os
import sys

import numpy as np

CASES = [
    # name, seed, ops
    ("randn_seed0", 0, [{"op": "randn", "n": 4000}]),
    ("randn_seed1", 1, [{"op": "randn", "n": 4001}]),
    ("randn_seed12345", 12345, [{"op": "randn", "n": 3000}]),
    ("randn_seed_max", 4294967295, [{"op": "randn", "n": 1000}]),
    # The ROME draw: RandomState(1).randn(S=10, e-b=3, d=64), C order.
    ("rome_randn_10x3x64_seed1", 1, [{"op": "randn", "shape": [10, 3, 64]}]),
    ("uniform_seed1", 1, [{"op": "uniform", "n": 2000, "low": -0.5, "high": 0.5}]),
    ("uniform_seed7_wide", 7, [{"op": "uniform", "n": 500, "low": -3.0, "high": 11.0}]),
    ("random_sample_seed42", 42, [{"op": "random_sample", "n": 2000}]),
    ("raw_seed5489", 5489, [{"op": "raw", "n": 1300}]),
    # Odd-length Gaussian draws leave one value cached; numpy keeps that cache
    # across uniform / random_sample calls and hands it out next.
    ("mixed_seed1", 1, [
        {"op": "randn", "n": 3},
        {"op": "uniform", "n": 5, "low": -0.5, "high": 0.5},
        {"op": "randn", "n": 4},
        {"op": "randn", "n": 1},
        {"op": "random_sample", "n": 3},
        {"op": "randn", "n": 1},
        {"op": "uniform", "n": 1, "low": -2.0, "high": 2.0},
        {"op": "standard_normal", "n": 7},
        {"op": "randn", "shape": [2, 3, 5]},
        {"op": "raw", "n": 3},
        {"op": "randn", "n": 2},
    ]),
    ("mixed_seed2024", 2024, [
        {"op": "randn", "n": 1},
        {"op": "uniform", "n": 1, "low": 0.0, "high": 1.0},
        {"op": "randn", "n": 1},
        {"op": "randn", "n": 1},
        {"op": "random_sample", "n": 1},
        {"op": "standard_normal", "n": 5},
        {"op": "uniform", "n": 9, "low": -0.25, "high": 0.75},
        {"op": "standard_normal", "n": 1},
    ]),
]


def run_op(rs, op):
    kind = op["op"]
    n = op.get("n")
    if kind in ("randn", "standard_normal"):
        f = rs.randn if kind == "randn" else rs.standard_normal
        if "shape" in op:
            out = f(*op["shape"]) if kind == "randn" else f(tuple(op["shape"]))
        elif n == 1:
            out = f()
        else:
            out = f(n)
    elif kind == "random_sample":
        out = rs.random_sample() if n == 1 else rs.random_sample(n)
    elif kind == "uniform":
        lo, hi = op["low"], op["high"]
        out = rs.uniform(lo, hi) if n == 1 else rs.uniform(lo, hi, n)
    elif kind == "raw":
        out = rs._bit_generator.random_raw(n).astype(np.float64)
    else:
        raise ValueError(kind)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float64)).reshape(-1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "fixtures", "noise")
    os.makedirs(out_dir, exist_ok=True)
    index = {
        "generator": "numpy.random.RandomState",
        "numpy_version": np.__version__,
        "format": "little-endian float64, C order, all ops of a case concatenated",
        "cases": [],
    }
    for name, seed, ops in CASES:
        rs = np.random.RandomState(seed)
        parts = [run_op(rs, op) for op in ops]
        values = np.concatenate(parts).astype("<f8")
        fname = name + ".f64"
        values.tofile(os.path.join(out_dir, fname))
        index["cases"].append({"name": name, "seed": seed, "ops": ops,
                               "file": fname, "count": int(values.size)})
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
