#!/usr/bin/env python3
"""Golden fixtures for knowtrace's GGUF reader and dequantizer.

Writes, under tests/fixtures/gguf/:

  dequant/<TYPE>.raw   raw GGML blocks of TYPE (random bytes, fp16 scale
                       fields forced to finite values)
  dequant/<TYPE>.f32   the expected float32 values (little-endian), computed
                       by the `gguf` package's own dequantizer (gguf.quants);
                       Q8_K, which gguf does not dequantize, uses the numpy
                       formula below (d * q)
  dequant/manifest.json  type name -> ggml type id, n_elements, reference
  tiny.gguf            a small valid GGUF v3 file written with gguf.GGUFWriter:
                       metadata of every value type (nested arrays included)
                       and tensors of several ggml types
  tiny_align64.gguf    the same idea with general.alignment = 64
  tiny.json            what tiny.gguf must read back as: tensor names, ne,
                       ggml type, data offset and the dequantized values

Deterministic (fixed seeds): re-running reproduces the same bytes.
Usage: python3 tests/reference/make_gguf_fixtures.py
Needs: gguf (PyPI), numpy.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")

# Byte offsets of the fp16 fields (scales) inside one block of each type.
HALF_FIELDS = {
    Q.Q4_0: [0],
    Q.Q4_1: [0, 2],
    Q.Q5_0: [0],
    Q.Q5_1: [0, 2],
    Q.Q8_0: [0],
    Q.Q2_K: [80, 82],
    Q.Q3_K: [108],
    Q.Q4_K: [0, 2],
    Q.Q5_K: [0, 2],
    Q.Q6_K: [208],
}


def finite_halves(rng, n):
    """n finite float16 values of mixed sign and magnitude, as uint16 bits."""
    mag = 10.0 ** rng.uniform(-4.0, 1.0, size=n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (mag * sign).astype(np.float16).view(np.uint16)


def random_blocks(rng, qtype, n_blocks):
    """Random bytes for n_blocks of qtype with finite fp16 scale fields."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype == Q.Q8_K:
        d = (10.0 ** rng.uniform(-4, 0, size=n_blocks)).astype(np.float32)
        raw[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
    for off in HALF_FIELDS.get(qtype, []):
        raw[:, off:off + 2] = finite_halves(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1), n_blocks * block_size


def f16_bits(rng, n):
    """Special values first (zeros, subnormals, extremes, inf, quiet NaNs),
    then random finite bit patterns."""
    special = [0x0000, 0x8000, 0x3C00, 0xBC00, 0x0001, 0x8001, 0x03FF, 0x0400,
               0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x3555, 0x1234]
    bits = rng.integers(0, 0x10000, size=n - len(special), dtype=np.uint32)
    # keep them finite: exponent 31 -> 30
    exp = (bits >> 10) & 0x1F
    bits = np.where(exp == 31, bits - (1 << 10), bits)
    return np.concatenate([np.array(special, dtype=np.uint32), bits]).astype(np.uint16)


def make_dequant(rng):
    d = os.path.join(OUT, "dequant")
    os.makedirs(d, exist_ok=True)
    manifest = {}

    def emit(name, qtype, raw, expected, reference):
        raw = np.ascontiguousarray(raw, dtype=np.uint8)
        expected = np.ascontiguousarray(expected, dtype="<f4")
        with open(os.path.join(d, name + ".raw"), "wb") as f:
            f.write(raw.tobytes())
        with open(os.path.join(d, name + ".f32"), "wb") as f:
            f.write(expected.tobytes())
        manifest[name] = {"ggml_type": int(qtype), "n_elements": int(expected.size),
                          "reference": reference}

    # Plain types: every bit pattern class, compared bit-exactly.
    f32 = rng.integers(0, 2**32, size=64, dtype=np.uint64).astype(np.uint32)
    f32[:4] = [0x00000000, 0x80000000, 0x7F800000, 0x00000001]
    raw = f32.view(np.uint8)
    emit("F32", Q.F32, raw, gguf.quants.dequantize(raw, Q.F32), "gguf.quants.dequantize")

    raw = f16_bits(rng, 256).view(np.uint8)
    emit("F16", Q.F16, raw, gguf.quants.dequantize(raw, Q.F16), "gguf.quants.dequantize")

    bf = rng.integers(0, 0x10000, size=128, dtype=np.uint32).astype(np.uint16)
    bf[:6] = [0x0000, 0x8000, 0x3F80, 0x7F80, 0xFF80, 0x7FC0]
    raw = bf.view(np.uint8)
    emit("BF16", Q.BF16, raw, gguf.quants.dequantize(raw, Q.BF16), "gguf.quants.dequantize")

    for qtype, n_blocks in [(Q.Q4_0, 8), (Q.Q4_1, 8), (Q.Q5_0, 8), (Q.Q5_1, 8), (Q.Q8_0, 8),
                            (Q.Q2_K, 3), (Q.Q3_K, 3), (Q.Q4_K, 3), (Q.Q5_K, 3), (Q.Q6_K, 3)]:
        raw, n = random_blocks(rng, qtype, n_blocks)
        expected = gguf.quants.dequantize(raw, qtype)
        assert expected.size == n and np.all(np.isfinite(expected)), qtype.name
        emit(qtype.name, qtype, raw, expected, "gguf.quants.dequantize")

    # Q8_K: float32 d | int8 qs[256] | int16 bsums[16]; value d * q.
    raw, n = random_blocks(rng, Q.Q8_K, 2)
    blocks = raw.reshape(2, -1)
    scale = blocks[:, 0:4].copy().view(np.float32)
    q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    emit("Q8_K", Q.Q8_K, raw, (q * scale).reshape(-1), "numpy: d * q (gguf has no Q8_K dequantizer)")

    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


def make_tiny(rng):
    path = os.path.join(OUT, "tiny.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("knowtrace tiny fixture")
    w.add_uint32("llama.block_count", 2)
    w.add_uint32("llama.context_length", 128)
    w.add_uint32("llama.embedding_length", 16)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    # One of every scalar type.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 3.25)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", -1.0 / 3.0)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "h\u00e9llo w\u00f6rld")
    w.add_key_value("test.empty_string", "", V.STRING)  # add_string skips empty values
    # Arrays.
    w.add_array("test.str_array", ["a", "bc", "", "\u00fcn\u00ef"])
    w.add_array("test.i32_array", [1, -2, 3, 2147483647])
    w.add_array("test.f32_array", [0.5, -1.5, 1e-3])
    w.add_key_value("test.u8_array", [0, 7, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.i64_array", [-(2**40), 5], V.ARRAY, sub_type=V.INT64)
    w.add_key_value("test.u32_array", [1, 4000000000], V.ARRAY, sub_type=V.UINT32)
    w.add_key_value("test.f64_array", [0.25, -2.0], V.ARRAY, sub_type=V.FLOAT64)
    w.add_array("test.bool_array", [True, False, True])
    w.add_array("test.nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("test.nested_str", [["x", "y"], ["z"]])
    w.add_array("test.nested3", [[[1], [2, 3]], [[4]]])
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"])
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_uint32("tokenizer.ggml.bos_token_id", 0)

    tensors = []  # (name, numpy value for add_tensor, raw_dtype or None)
    tensors.append(("t.f32", rng.standard_normal((3, 5)).astype(np.float32), None))
    tensors.append(("t.f16", rng.standard_normal((2, 8)).astype(np.float16), None))
    bf16 = gguf.quants.quantize(rng.standard_normal((2, 8)).astype(np.float32), Q.BF16)
    tensors.append(("t.bf16", bf16, Q.BF16))
    q80 = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), Q.Q8_0)
    tensors.append(("t.q8_0", q80, Q.Q8_0))
    raw, _ = random_blocks(rng, Q.Q4_K, 1)
    tensors.append(("t.q4_k", raw.reshape(1, -1), Q.Q4_K))
    raw, _ = random_blocks(rng, Q.Q6_K, 2)
    tensors.append(("blk.0.q6_k", raw.reshape(2, 1, -1), Q.Q6_K))
    tensors.append(("t.4d", rng.standard_normal((2, 1, 3, 2)).astype(np.float32), None))
    tensors.append(("t.i32", np.arange(6, dtype=np.int32).reshape(2, 3), None))
    for name, value, raw_dtype in tensors:
        w.add_tensor(name, value, raw_dtype=raw_dtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # What the reader must find, read back with gguf's own reader.
    r = gguf.GGUFReader(path)
    out = {"data_offset": int(r.data_offset), "alignment": int(r.alignment), "tensors": []}
    for t in r.tensors:
        entry = {"name": t.name, "ne": [int(x) for x in t.shape], "ggml_type": int(t.tensor_type),
                 "offset": int(t.data_offset - r.data_offset), "n_bytes": int(t.n_bytes),
                 "n_elements": int(t.n_elements)}
        if t.tensor_type != Q.I32:
            vals = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
            entry["values"] = [float(v) for v in vals]
        tensors_out = out["tensors"]
        tensors_out.append(entry)
    with open(os.path.join(OUT, "tiny.json"), "w") as f:
        # one line per tensor keeps the file small and diffable
        f.write('{"data_offset": %d, "alignment": %d, "tensors": [\n' % (out["data_offset"], out["alignment"]))
        f.write(",\n".join(json.dumps(t) for t in out["tensors"]))
        f.write("\n]}\n")

    # Custom alignment.
    path = os.path.join(OUT, "tiny_align64.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_custom_alignment(64)
    w.add_string("test.string", "x")
    w.add_tensor("a", np.arange(3, dtype=np.float32))
    w.add_tensor("b", np.arange(5, dtype=np.float32) * 0.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    make_dequant(rng)
    make_tiny(np.random.default_rng(7))
    total = 0
    for dirpath, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    from importlib.metadata import version
    print(f"wrote fixtures under {OUT} ({total} bytes, gguf {version('gguf')})")


if __name__ == "__main__":
    sys.exit(main())
