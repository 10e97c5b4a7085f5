#!/usr/bin/env python3
"""A Llama-3.1-style GGUF of the tiny llama fixture, written the way
llama.cpp's converter (convert_hf_to_gguf.py) writes Llama-3.1/3.2 models:
float32 tensors under llama.cpp's names, q/k rows permuted for its rotary
layout, and the `llama3` rope scaling as a `rope_freqs.weight` tensor of
per-frequency divisors instead of config fields.

Writes tests/fixtures/gguf/llama_rope_freqs.gguf. The test
(test_gguf: GgufLlama3.RopeFreqsMatchTheHuggingFaceCheckpoint) loads it and
the HF directory tests/fixtures/models/llama (rope_scaling: llama3) and
requires the same logits, and transformers' goldens of that directory.

Usage: python3 tests/reference/make_llama3_gguf.py
Needs: gguf, numpy, safetensors (PyPI).
"""
import json
import math
import os

import gguf
import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "tests", "fixtures", "models", "llama")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf", "llama_rope_freqs.gguf")


def permute(w, n_head):
    """llama.cpp's q/k row order: per head, the two rotary halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_factors(cfg, head_dim):
    """The divisors llama.cpp's converter derives from a llama3 rope_scaling."""
    rs = cfg.get("rope_parameters") or cfg["rope_scaling"]
    base = rs.get("rope_theta", cfg.get("rope_theta", 10000.0))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32), base


def main():
    cfg = json.load(open(os.path.join(SRC, "config.json")))
    tok = json.load(open(os.path.join(SRC, "tokenizer.json"), encoding="utf-8"))
    w = load_file(os.path.join(SRC, "model.safetensors"))
    w = {k: v.astype(np.float32) for k, v in w.items()}
    nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd = cfg.get("head_dim") or d // nh
    factors, base = rope_factors(cfg, hd)

    g = gguf.GGUFWriter(OUT, arch="llama")
    g.add_block_count(cfg["num_hidden_layers"])
    g.add_context_length(cfg["max_position_embeddings"])
    g.add_embedding_length(d)
    g.add_feed_forward_length(cfg["intermediate_size"])
    g.add_head_count(nh)
    g.add_head_count_kv(nkv)
    g.add_rope_freq_base(base)
    g.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    g.add_rope_dimension_count(hd)
    # The byte-level vocabulary as llama.cpp writes a Llama-3 tokenizer.
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    added = {a["id"]: a for a in tok["added_tokens"]}
    tokens = [t for t, _ in vocab]
    for i in sorted(added):
        if i >= len(tokens):
            tokens.append(added[i]["content"])
    types = [gguf.TokenType.CONTROL if i in added and added[i]["special"] else gguf.TokenType.NORMAL
             for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    g.add_tokenizer_model("gpt2")
    g.add_tokenizer_pre("llama-bpe")
    g.add_token_list(tokens)
    g.add_token_types(types)
    g.add_token_merges(merges)
    g.add_bos_token_id(cfg["bos_token_id"])
    g.add_add_bos_token(True)

    g.add_tensor("token_embd.weight", w["model.embed_tokens.weight"])
    g.add_tensor("rope_freqs.weight", factors)
    g.add_tensor("output_norm.weight", w["model.norm.weight"])
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        g.add_tensor(f"blk.{l}.attn_norm.weight", w[p + "input_layernorm.weight"])
        g.add_tensor(f"blk.{l}.ffn_norm.weight", w[p + "post_attention_layernorm.weight"])
        g.add_tensor(f"blk.{l}.attn_q.weight", permute(w[p + "self_attn.q_proj.weight"], nh))
        g.add_tensor(f"blk.{l}.attn_k.weight", permute(w[p + "self_attn.k_proj.weight"], nkv))
        g.add_tensor(f"blk.{l}.attn_v.weight", w[p + "self_attn.v_proj.weight"])
        g.add_tensor(f"blk.{l}.attn_output.weight", w[p + "self_attn.o_proj.weight"])
        g.add_tensor(f"blk.{l}.ffn_gate.weight", w[p + "mlp.gate_proj.weight"])
        g.add_tensor(f"blk.{l}.ffn_up.weight", w[p + "mlp.up_proj.weight"])
        g.add_tensor(f"blk.{l}.ffn_down.weight", w[p + "mlp.down_proj.weight"])
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    print(OUT, os.path.getsize(OUT), "bytes; rope factors", factors.tolist())


if __name__ == "__main__":
    main()
