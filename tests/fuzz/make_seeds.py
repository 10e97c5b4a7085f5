#!/usr/bin/env python3
"""Regenerates the seed corpora under tests/fuzz/corpus/<target>/ from the
test fixtures (tests/fixtures/, hparams/). Deterministic; needs only the
Python standard library. Regression seeds (crash-*, regress-*) found by the
fuzzers are committed beside these and are not touched.

Usage: python3 tests/fuzz/make_seeds.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "tests", "fixtures")
CORPUS = os.path.join(HERE, "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors -----------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # as the safetensors library pads
    return struct.pack("<Q", len(h)) + h + blob


def seeds_safetensors():
    f32 = struct.pack("<6f", 0.5, -1.0, 2.0, 3.25, -0.125, 8.0)
    out("safetensors", "dtypes.safetensors", safetensors([
        ("transformer.wte.weight", "F32", [2, 3], f32),
        ("transformer.h.0.ln_1.weight", "F16", [4], struct.pack("<4H", 0x3C00, 0xBC00, 0x4000, 0x0000)),
        ("transformer.h.0.ln_1.bias", "BF16", [2, 2], struct.pack("<4H", 0x3F80, 0xBF80, 0x4000, 0x7F80)),
        ("model.layers.0.self_attn.q_proj.weight", "F64", [1], struct.pack("<d", 1.5)),
        ("ids", "I64", [2], struct.pack("<2q", 7, -7)),
        ("mask", "BOOL", [3], b"\x01\x00\x01"),
        ("scalar", "I32", [], struct.pack("<i", 42)),
        ("empty", "U8", [0, 5], b""),
    ], metadata={"format": "pt"}))
    out("safetensors", "empty.safetensors", safetensors([]))
    out("safetensors", "small_types.safetensors", safetensors([
        ("a", "I8", [3], b"\x01\xff\x7f"), ("b", "I16", [2], struct.pack("<2h", -2, 300)),
        ("c", "U8", [1, 1, 2], b"\x00\xff")]))
    # The gpt2 fixture's real header, with every tensor shrunk to one element.
    with open(os.path.join(FIX, "models", "gpt2", "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}
    ts = []
    for name, info in sorted(hdr.items())[:12]:
        if name == "__metadata__":
            continue
        ts.append((name, info["dtype"], [1] * len(info["shape"]), b"\x00" * sizes[info["dtype"]]))
    out("safetensors", "gpt2_header.safetensors", safetensors(ts, hdr.get("__metadata__")))


# ---- gguf ------------------------------------------------------------------
def gg_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gg_kv(key, vtype, payload):
    return gg_str(key) + struct.pack("<I", vtype) + payload


def gguf(kvs, tensors, alignment=32):
    """tensors: (name, ne list, ggml type, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    infos, data = b"", b""
    for name, ne, gtype, raw in tensors:
        data += b"\x00" * (-len(data) % alignment)
        infos += gg_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        infos += struct.pack("<IQ", gtype, len(data))
        data += raw
    body = head + infos
    body += b"\x00" * (-len(body) % alignment)
    return body + data


def seeds_gguf():
    for name in ("tiny.gguf", "tiny_align64.gguf"):
        shutil.copy(os.path.join(FIX, "gguf", name), os.path.join(CORPUS, "gguf", name))
    with open(os.path.join(FIX, "gguf", "dequant", "manifest.json")) as f:
        manifest = json.load(f)
    tensors = []
    for tname, info in sorted(manifest.items()):
        with open(os.path.join(FIX, "gguf", "dequant", tname + ".raw"), "rb") as f:
            raw = f.read()
        tensors.append(("blk.0." + tname.lower(), [info["n_elements"]], info["ggml_type"], raw))
    vocab = ["<s>", "</s>", "a", "b", "ab"]
    kvs = [
        gg_kv("general.architecture", 8, gg_str("llama")),
        gg_kv("llama.block_count", 4, struct.pack("<I", 1)),
        gg_kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
        gg_kv("tokenizer.ggml.model", 8, gg_str("gpt2")),
        gg_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(vocab)) + b"".join(gg_str(t) for t in vocab)),
        gg_kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, len(vocab)) + struct.pack("<5i", 3, 3, 1, 1, 1)),
        gg_kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, 1) + gg_str("a b")),
        gg_kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 0)),
        gg_kv("tokenizer.ggml.add_bos_token", 7, b"\x01"),
        gg_kv("rope.freq", 12, struct.pack("<d", 10000.0)),
        gg_kv("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 2, 2) + struct.pack("<2H", 1, 2)),
    ]
    out("gguf", "all_dequant_types.gguf", gguf(kvs, tensors))


# ---- npz -------------------------------------------------------------------
def seeds_npz():
    for name in sorted(os.listdir(os.path.join(FIX, "npz"))):
        if name.endswith(".npz"):
            shutil.copy(os.path.join(FIX, "npz", name), os.path.join(CORPUS, "npz", name))
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    hdr += " " * (-(10 + len(hdr) + 1) % 64) + "\n"
    out("npz", "plain.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode()
        + struct.pack("<6f", *range(6)))


# ---- tokenizer -------------------------------------------------------------
def shrink_tokenizer(path, keep=420):
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    m = j["model"]
    vocab = {t: i for t, i in m["vocab"].items() if i < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    nxt = keep
    for t in j.get("added_tokens", []):
        if t["id"] >= keep:
            t["id"] = nxt
            nxt += 1
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


def seeds_tokenizer():
    base = os.path.join(FIX, "tokenizers")
    for name in sorted(os.listdir(base)):
        tok = shrink_tokenizer(os.path.join(base, name, "tokenizer.json"))
        out("tokenizer", name + ".json", tok)
        with open(os.path.join(base, name, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = f.read()
        out("tokenizer", name + "_with_config.json", tok + "\n#tokenizer_config.json\n" + cfg)


# ---- gguf_vocab ---------------------------------------------------------------
def vocab_gguf(model, tokens, types, extra):
    kvs = [gg_kv("general.architecture", 8, gg_str("llama")),
           gg_kv("tokenizer.ggml.model", 8, gg_str(model)),
           gg_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens)) + b"".join(gg_str(t) for t in tokens)),
           gg_kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, len(types)) + struct.pack(f"<{len(types)}i", *types))]
    return gguf(kvs + extra, [])


def seeds_gguf_vocab():
    """SentencePiece vocabularies in the two GGUF flavours (Llama 2: space
    prefix; Gemma: none, user-defined space runs) from the llama2 / gemma
    fixture pieces (scores = -rank), and the gpt2 fixture as byte-level."""
    def u32(key, v):
        return gg_kv(key, 4, struct.pack("<I", v))

    def flag(key, v):
        return gg_kv(key, 7, b"\x01" if v else b"\x00")

    for name, prefix in (("llama2", True), ("gemma", False)):
        with open(os.path.join(FIX, "tokenizers", name, "tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
        vocab = {t: i for t, i in j["model"]["vocab"].items()}
        for a in j["added_tokens"]:
            vocab[a["content"]] = a["id"]
        tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])][:600]
        if not prefix:
            tokens += ["  ", "   ", "\n\n"]
        special = {a["content"] for a in j["added_tokens"] if a["special"]}
        types = [3 if t in special else 6 if t.startswith("<0x") else 4 if t.strip() == "" else 1 for t in tokens]
        scores = [-float(i) for i in range(len(tokens))]
        extra = [gg_kv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, len(scores)) + struct.pack(f"<{len(scores)}f", *scores)),
                 u32("tokenizer.ggml.bos_token_id", vocab.get("<s>", vocab.get("<bos>"))),
                 u32("tokenizer.ggml.eos_token_id", vocab.get("</s>", vocab.get("<eos>"))),
                 u32("tokenizer.ggml.unknown_token_id", vocab["<unk>"]),
                 flag("tokenizer.ggml.add_bos_token", True), flag("tokenizer.ggml.add_space_prefix", prefix)]
        out("gguf_vocab", name + "_spm.gguf", vocab_gguf("llama", tokens, types, extra))
    tokens, merges = [], []
    with open(os.path.join(FIX, "tokenizers", "gpt2", "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    tokens = [t for t, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])][:400]
    have = set(tokens)
    for mg in j["model"]["merges"]:
        a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
        if a in have and b in have and a + b in have:
            merges.append(a + " " + b)
    extra = [gg_kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(gg_str(m) for m in merges)),
             gg_kv("tokenizer.ggml.pre", 8, gg_str("smollm"))]
    out("gguf_vocab", "gpt2_bpe.gguf", vocab_gguf("gpt2", tokens, [1] * len(tokens), extra))


# ---- config ----------------------------------------------------------------
def seeds_config():
    for src in ("hparams/smollm2-135m.yaml", "hparams/gpt2-xl.yaml", "hparams/llama-3.2-3b.yaml",
                "tests/fixtures/pipeline/gpt2-tiny.yaml"):
        shutil.copy(os.path.join(ROOT, src), os.path.join(CORPUS, "config", os.path.basename(src)))
    out("config", "run.json", json.dumps({
        "model": "models/x.gguf", "layer_name": "", "attn_name": "", "mlp_name": "", "embed_name": "",
        "dataset": "default", "samples": 10, "noise": "s3", "seed": 1, "replace": False,
        "mediators": ["hidden", "mlp"], "window": 10, "convention": "resid_post", "positions": "rome6",
        "average": "tokens", "filter": "rome", "device": "cpu", "dtype": "float32", "results": "",
        "limit": 5, "facts": ["1", "2"], "save_states": False, "engine": "fast", "max_batch_tokens": 0,
        "formats": ["png"], "stages": ["filter", "trace"], "config_path": "x.yaml", "name": "x"}, indent=2))


if __name__ == "__main__":
    for t in ("safetensors", "gguf", "npz", "tokenizer", "gguf_vocab", "config"):
        os.makedirs(os.path.join(CORPUS, t), exist_ok=True)
    seeds_safetensors()
    seeds_gguf()
    seeds_npz()
    seeds_tokenizer()
    seeds_gguf_vocab()
    seeds_config()
