#!/usr/bin/env python3
"""GGUF files of tiny fixture checkpoints, written the way llama.cpp's
converter (convert_hf_to_gguf.py) writes those families: float32 tensors
under llama.cpp's names, and per family what the converter does --

  llama   q/k rows permuted for llama.cpp's rotary layout, and the `llama3`
          rope scaling as a `rope_freqs.weight` tensor of per-frequency
          divisors instead of config fields (Llama-3.1/3.2 GGUFs);
  qwen3   as is, with attn_q_norm / attn_k_norm;
  olmo2   post_attention_norm / post_ffw_norm and no pre-norms;
  phi3    the fused attn_qkv and the fused gate/up as ffn_up.

Writes tests/fixtures/gguf/<name>.gguf (llama: llama_rope_freqs.gguf). The
tests (test_model: ModelGguf.*) load each beside the Hugging Face directory
it came from and require the same logits, and transformers' goldens.

Usage: python3 tests/reference/make_gguf_models.py [name ...]
Needs: gguf, numpy, safetensors, torch (PyPI; the fixtures are stored in bf16/fp16 too).
"""
import json
import math
import os
import sys

import gguf
import numpy as np
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "gguf")
# fixture -> (GGUF architecture, output file)
FAMILIES = {"llama": ("llama", "llama_rope_freqs.gguf"), "qwen3": ("qwen3", "qwen3.gguf"),
            "olmo2": ("olmo2", "olmo2.gguf"), "phi3": ("phi3", "phi3.gguf")}


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


def layer_tensors(arch, p, w, nh, nkv):
    """(llama.cpp name suffix, array) of one layer, as the converter writes them."""
    q, k = w.get(p + "self_attn.q_proj.weight"), w.get(p + "self_attn.k_proj.weight")
    if arch == "llama":
        q, k = permute(q, nh), permute(k, nkv)
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
             "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
             "attn_qkv": "self_attn.qkv_proj"}
    if arch == "olmo2":
        names.update(post_attention_norm="post_attention_layernorm", post_ffw_norm="post_feedforward_layernorm")
        del names["attn_norm"], names["ffn_norm"]
    if arch == "phi3":
        names["ffn_up"] = "mlp.gate_up_proj"  # llama.cpp keeps phi3's fused gate/up as ffn_up
    out = [(n, w[p + hf + ".weight"]) for n, hf in names.items() if p + hf + ".weight" in w]
    if q is not None:
        out += [("attn_q", q), ("attn_k", k)]
    return out


def write(name):
    arch, file = FAMILIES[name]
    src = os.path.join(MODELS, name)
    out = os.path.join(OUT_DIR, file)
    cfg = json.load(open(os.path.join(src, "config.json")))
    tok = json.load(open(os.path.join(src, "tokenizer.json"), encoding="utf-8"))
    w = {k: v.float().numpy() for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
    nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd = cfg.get("head_dim") or d // nh
    rp = cfg.get("rope_parameters") or {}

    g = gguf.GGUFWriter(out, arch=arch)
    g.add_block_count(cfg["num_hidden_layers"])
    g.add_context_length(cfg["max_position_embeddings"])
    g.add_embedding_length(d)
    g.add_feed_forward_length(cfg["intermediate_size"])
    g.add_head_count(nh)
    g.add_head_count_kv(nkv)
    g.add_key_length(hd)
    g.add_value_length(hd)
    g.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    g.add_rope_dimension_count(hd)
    if arch == "llama":
        factors, base = rope_factors(cfg, hd)
        g.add_tensor("rope_freqs.weight", factors)
    else:
        base = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    g.add_rope_freq_base(base)
    write_vocabulary(g, tok, cfg)

    g.add_tensor("token_embd.weight", w["model.embed_tokens.weight"])
    g.add_tensor("output_norm.weight", w["model.norm.weight"])
    if "lm_head.weight" in w and not cfg.get("tie_word_embeddings"):
        g.add_tensor("output.weight", w["lm_head.weight"])
    for l in range(cfg["num_hidden_layers"]):
        for n, t in layer_tensors(arch, f"model.layers.{l}.", w, nh, nkv):
            g.add_tensor(f"blk.{l}.{n}.weight", t)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    print(out, os.path.getsize(out), "bytes")


def write_vocabulary(g, tok, cfg):
    """A byte-level vocabulary as llama.cpp writes one (model gpt2), or a
    SentencePiece-style one (model llama: pieces, scores = -rank, types)."""
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    added = {a["id"]: a for a in tok["added_tokens"]}
    tokens = [t for t, _ in vocab]
    for i in sorted(added):
        if i >= len(tokens):
            tokens.append(added[i]["content"])
        else:
            tokens[i] = added[i]["content"]
    byte_level = tok.get("pre_tokenizer") and "ByteLevel" in json.dumps(tok["pre_tokenizer"])
    def kind(i, t):
        if i in added and added[i]["special"]:
            return gguf.TokenType.CONTROL
        if not byte_level and t.startswith("<0x") and len(t) == 6:
            return gguf.TokenType.BYTE
        return gguf.TokenType.NORMAL
    types = [kind(i, t) for i, t in enumerate(tokens)]
    if byte_level:
        g.add_tokenizer_model("gpt2")
        g.add_tokenizer_pre("qwen2" if "\\p{N}|" in json.dumps(tok["pre_tokenizer"]) else "gpt-2")
        g.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    else:
        g.add_tokenizer_model("llama")
        g.add_token_scores([-float(i) for i in range(len(tokens))])
    g.add_token_list(tokens)
    g.add_token_types(types)
    if cfg.get("bos_token_id") is not None:
        g.add_bos_token_id(cfg["bos_token_id"])
    if cfg.get("eos_token_id") is not None:
        g.add_eos_token_id(cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], int) else cfg["eos_token_id"][0])


def main():
    for name in sys.argv[1:] or FAMILIES:
        write(name)


if __name__ == "__main__":
    main()
