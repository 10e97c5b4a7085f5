#!/usr/bin/env python3
"""Random-weight Llama checkpoints with the exact shapes of Llama-3.2-3B and
Llama-3.1-8B, for timing on a GPU (no download: config only, random init).

  python3 bench/gpu_models.py --out /tmp/kt-gpu-models [--models llama-3.2-3b,llama-3.1-8b]
                              [--device cuda] [--dtype bfloat16]

Each model is written with save_pretrained (safetensors, bf16) to OUT/NAME/
with a tokenizer. With --tokenizer DIR (scripts/gpu-prepare.sh makes one
with bench/llama3_tokenizer.py) it is Llama 3's own: 128256 ids, bos/eos
128000/128001 as in the real models, so known_1000 prompts have the lengths
Llama 3 gives them (10.6 tokens on average with the BOS). Without it, the
tiny trained BPE of tests/fixtures/tokenizers/llama3 (2000 ids, bos/eos 0/1)
stands in: vocab_size stays 128256, so the embedding and lm_head keep their
real sizes and cost, but prompts split into more tokens (14.2 on average).

KT_GPU_MODEL_SHAPES=tiny (or --shapes tiny) makes a 2-layer, 64-wide model
with the same vocabulary instead, to test this script without a GPU.
An existing OUT/NAME with the same config is reused. Prints a JSON summary.
"""
import argparse
import inspect
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "llama3")

# The published configs' shapes (hidden, MLP, layers, heads, KV heads, head
# dim, vocabulary, RoPE with llama3 scaling, tied embeddings for 3.2-3B).
SHAPES = {
    "llama-3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                         num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=500000.0,
                         rope=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                   original_max_position_embeddings=8192)),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, tie_word_embeddings=False, rope_theta=500000.0,
                         rope=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                   original_max_position_embeddings=8192)),
}
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
            tie_word_embeddings=False, rope_theta=500000.0,
            rope=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                      original_max_position_embeddings=8192))


def special_ids(tokenizer_dir):
    """bos/eos ids of a tokenizer folder, from its config's token names."""
    try:
        with open(os.path.join(tokenizer_dir, "tokenizer.json")) as f:
            added = {t["content"]: t["id"] for t in json.load(f).get("added_tokens", [])}
        with open(os.path.join(tokenizer_dir, "tokenizer_config.json")) as f:
            cfg = json.load(f)
        return added[cfg["bos_token"]], added[cfg["eos_token"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"gpu_models.py: {tokenizer_dir}: no tokenizer.json / tokenizer_config.json with bos and eos ({e})")


def make_config(tf, shape, dtype_name, bos, eos):
    s = dict(shape)
    rope = s.pop("rope")
    theta = s.pop("rope_theta")
    params = inspect.signature(tf.LlamaConfig.__init__).parameters
    if "rope_parameters" in params:  # transformers 5
        s["rope_parameters"] = dict(rope, rope_theta=theta)
    else:
        s["rope_scaling"], s["rope_theta"] = rope, theta
    cfg = tf.LlamaConfig(bos_token_id=bos, eos_token_id=eos, attention_bias=False, mlp_bias=False, hidden_act="silu",
                         initializer_range=0.02, **s)
    setattr(cfg, "dtype" if int(tf.__version__.split(".")[0]) >= 5 else "torch_dtype", dtype_name)
    return cfg


def same_config(path, cfg):
    try:
        with open(os.path.join(path, "config.json")) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return False
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "vocab_size", "tie_word_embeddings", "bos_token_id", "eos_token_id")
    files = os.listdir(path)
    has_weights = any(f.endswith(".safetensors") for f in files) and "tokenizer.json" in files
    return has_weights and all(old.get(k) == getattr(cfg, k) for k in keys)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/kt-gpu-models")
    p.add_argument("--models", default="llama-3.2-3b,llama-3.1-8b")
    p.add_argument("--device", default=None, help="where to initialise (default: cuda if available)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--shapes", default=os.environ.get("KT_GPU_MODEL_SHAPES", "real"), choices=["real", "tiny"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", default=os.environ.get("KT_GPU_TOKENIZER") or TOKENIZER,
                   help="folder with tokenizer.json and tokenizer_config.json (default: the llama3 fixture)")
    args = p.parse_args()

    import torch
    import transformers as tf
    tf.utils.logging.disable_progress_bar()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    bos, eos = special_ids(args.tokenizer)
    summary = {"out": args.out, "device": str(device), "dtype": args.dtype, "shapes": args.shapes,
               "tokenizer": os.path.abspath(args.tokenizer), "bos": bos, "eos": eos, "models": []}
    for name in args.models.split(","):
        if name not in SHAPES:
            sys.exit(f"gpu_models.py: unknown model {name!r}; known: {', '.join(SHAPES)}")
        shape = SHAPES[name] if args.shapes == "real" else dict(TINY, tie_word_embeddings=SHAPES[name]["tie_word_embeddings"])
        cfg = make_config(tf, shape, args.dtype, bos, eos)
        path = os.path.join(args.out, name + ("-tiny" if args.shapes == "tiny" else ""))
        t0 = time.perf_counter()
        entry = {"name": name, "path": path, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
                 "vocab_size": cfg.vocab_size}
        if same_config(path, cfg):
            entry["reused"] = True
        else:
            shutil.rmtree(path, ignore_errors=True)
            torch.manual_seed(args.seed)
            old = torch.get_default_dtype()
            torch.set_default_dtype(dtype)  # initialise directly in bf16, on the GPU: seconds, not minutes
            try:
                with torch.device(device), torch.no_grad():
                    model = tf.LlamaForCausalLM(cfg)
            finally:
                torch.set_default_dtype(old)
            entry["params"] = sum(t.numel() for t in model.parameters())
            t1 = time.perf_counter()
            model.save_pretrained(path, max_shard_size="5GB")
            entry["init_seconds"], entry["save_seconds"] = t1 - t0, time.perf_counter() - t1
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for f in ("tokenizer.json", "tokenizer_config.json"):  # also on reuse: the tokenizer may be another
            shutil.copy(os.path.join(args.tokenizer, f), os.path.join(path, f))
        entry["bytes"] = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
        entry["seconds"] = time.perf_counter() - t0
        print(f"gpu_models: {name} -> {path} ({entry['bytes'] / 1e9:.2f} GB, {entry['seconds']:.1f} s"
              f"{', reused' if entry.get('reused') else ''})", file=sys.stderr, flush=True)
        summary["models"].append(entry)
    json.dump(summary, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
