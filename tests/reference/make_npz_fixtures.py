#!/usr/bin/env python3
"""Makes the numpy-written .npz fixtures that test_npz reads back.

Writes, next to this script:
  rome.npz                   np.savez of a ROME causal-trace result (its keys and dtypes)
  all_dtypes.npz             np.savez of every supported dtype, 0-d, empty, 3-d,
                             Fortran-ordered and big-endian arrays
  all_dtypes_compressed.npz  the same arrays through np.savez_compressed (deflate)
  big_compressed.npz         np.savez_compressed of 1.6 MB of very compressible data
                             (inflate output growing far past the compressed size)
  complex.npz                a complex64 array (unsupported dtype)
  structured.npz             a structured array (unsupported dtype)
  expected.json              for each file and key: dtype as knowtrace reports it
                             (canonical little-endian), shape, values in C order;
                             plus "f16": float32 bit patterns and numpy's float16
                             bits for them (round to nearest even)

Usage: python3 tests/fixtures/npz/make_fixtures.py
"""
import json
import os

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "npz")


def rome_arrays():
    rng = np.random.RandomState(0)
    scores = rng.rand(6, 4).astype(np.float32)
    tokens = ["<|endoftext|>", "The", " Eiffel", " Tower", " is", " in",
              " caf\u00e9", " \u00c4\u0120", " \U0001F600"]
    return {
        "scores": scores,
        "low_score": np.array(np.float32(0.0123)),
        "high_score": np.array(np.float32(0.875)),
        "input_ids": np.array([50256, 464, 412, 733, 318, 287, 9, 10, 11], dtype=np.int64),
        "input_tokens": np.array(tokens),
        "subject_range": np.array((1, 4), dtype=np.int64),
        "answer": np.array(" Paris"),
        "window": np.array(10),
        "correct_prediction": np.array(True),
        "kind": np.array("mlp"),
    }


def all_dtype_arrays():
    f16_vals = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1035156e-05, 5.9604645e-08, 0.333],
                        dtype=np.float16)
    a3 = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.5 - 3
    return {
        "f16": f16_vals,
        "f32": np.array([1.5, -0.1, 3.4028235e38, 1e-45, 0.0], dtype=np.float32),
        "f64": np.array([np.pi, -1e300, 5e-324, 0.1, 2.0 ** 60], dtype=np.float64),
        "i32": np.array([0, -1, 2147483647, -2147483648, 7], dtype=np.int32),
        "i64": np.array([0, -1, 2 ** 63 - 1, -2 ** 63, 123456789012345], dtype=np.int64),
        "bool": np.array([True, False, True, True], dtype=np.bool_),
        "u8": np.array([0, 1, 127, 128, 255], dtype=np.uint8),
        "str": np.array(["a", "", "\u00fcber", "\u4e2d\u6587", "\U0001F600x"]),
        "scalar_f32": np.array(np.float32(-7.25)),
        "scalar_f64": np.array(0.1),
        "scalar_i64": np.array(-42, dtype=np.int64),
        "scalar_bool": np.array(False),
        "scalar_str": np.array("hidden"),
        "empty_f32": np.zeros((0,), dtype=np.float32),
        "empty_3d": np.zeros((2, 0, 3), dtype=np.int64),
        "empty_str": np.array([], dtype="<U1"),
        "cube": a3,
        "fortran": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        "fortran_3d": np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4)),
        "big_endian_f4": np.array([1.0, -2.0, 0.5], dtype=">f4"),
        "big_endian_i8": np.array([[1, -2], [3, 2 ** 40]], dtype=">i8"),
        "big_endian_str": np.array(["ab", "\u00e9"], dtype=">U2"),
        "matrix_u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "matrix_bool": np.array([[True, False], [False, True]]),
    }


CANONICAL = {"f": "<f", "i": "<i", "u": "|u", "b": "|b", "U": "<U"}


def describe(arr):
    dt = arr.dtype
    canon = CANONICAL[dt.kind] + (str(dt.itemsize // 4) if dt.kind == "U" else str(dt.itemsize))
    flat = np.ascontiguousarray(arr).reshape(-1)
    if dt.kind == "U":
        values = [str(x) for x in flat]
    elif dt.kind == "b":
        values = [bool(x) for x in flat]
    elif dt.kind in "iu":
        values = [int(x) for x in flat]
    else:
        values = [float(x) for x in flat]
    return {"dtype": canon, "shape": list(arr.shape), "values": values}


def f16_table():
    special = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.996, 65520.0, 1e6, -1e6,
               6.103515625e-05, 6.097555160522461e-05, 5.960464477539063e-08,
               2.9802322387695312e-08, 2.980232594040899e-08, 1e-8, 1.00048828125,
               1.0009765625, 1.00146484375, 0.1, 0.2, 0.3, 3.140625, 2049.0, 2051.0,
               float("inf"), float("-inf"), float("nan")]
    rng = np.random.RandomState(3)
    vals = np.concatenate([
        np.array(special, dtype=np.float32),
        (rng.randn(400) * 10.0 ** rng.randint(-9, 6, 400)).astype(np.float32),
        rng.randint(0, 2 ** 32, 600, dtype=np.uint64).astype(np.uint32).view(np.float32),
    ])
    with np.errstate(over="ignore", invalid="ignore"):
        halves = vals.astype(np.float16)
    return {"f32_bits": [int(x) for x in vals.view(np.uint32)],
            "f16_bits": [int(x) for x in halves.view(np.uint16)]}


def main():
    rome = rome_arrays()
    alld = all_dtype_arrays()
    np.savez(os.path.join(HERE, "rome.npz"), **rome)
    np.savez(os.path.join(HERE, "all_dtypes.npz"), **alld)
    np.savez_compressed(os.path.join(HERE, "all_dtypes_compressed.npz"), **alld)
    np.savez_compressed(os.path.join(HERE, "big_compressed.npz"),
                        zeros=np.zeros(100000, dtype=np.float64),
                        ramp=(np.arange(200000, dtype=np.int64) % 7))
    np.savez(os.path.join(HERE, "complex.npz"), c=np.array([1 + 2j], dtype=np.complex64))
    np.savez(os.path.join(HERE, "structured.npz"),
             s=np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]))
    expected = {
        "numpy_version": np.__version__,
        "rome.npz": {k: describe(v) for k, v in rome.items()},
        "all_dtypes.npz": {k: describe(v) for k, v in alld.items()},
        "f16": f16_table(),
    }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=True)
        f.write("\n")


if __name__ == "__main__":
    main()
