#!/usr/bin/env python3
"""Tiny random checkpoints of every supported architecture, plus goldens.

Each fixture is a real Hugging Face checkpoint written by save_pretrained
(config.json, model.safetensors, tokenizer files) so knowtrace loads it
exactly as it would a downloaded model. Goldens come from transformers'
own forward pass (eager attention, float32):

  golden.json          prompts, token ids, array index
  golden_logits_last.bin      float32 [n_prompts, vocab]   last-position logits
  golden_logits_all.bin       float32 [tokens, vocab]      every position of prompt 0
  golden_logits_last_bf16.bin float32 [n_prompts, vocab]   transformers run in bfloat16
  golden_sites.bin            float32 values of forward hooks on prompt 0

Run from the repository root:  python3 tests/reference/make_fixtures.py [name ...]
(names: keys of FIXTURES; none = all of them)
Needs: torch, transformers, tokenizers (PyPI). The tokenizers come from
tests/reference/make_tokenizer_fixtures.py (run it first).
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOK_DIR = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "models")

PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "Vinson Massif is located in the continent of",
    "Miles Davis plays the",
    "The mother tongue of Danielle Darrieux is",
    "Toko Yasuda, the",
    "Apple A5 was created by",
    "In 1969, 3 astronauts flew to the Moon; the first to walk on it was",
    "Le Corbusier worked in Zürich and Paris, then",
    "  Two  spaces   and\ta tab,\nthen a newline.",
    "Numbers: 12345 and 3.14159 and 2026-11-28.",
    "Köln, Montréal, São Paulo and Москва are cities;",
    "Its capital is",
]

# name -> (config class, tokenizer, storage dtype, config kwargs[, options])
# options: norm_noise (std of seeded noise added to every norm weight; 0 = as initialised)
NORM_NOISE = dict(norm_noise=0.2)
COMMON = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
              max_position_embeddings=128, initializer_range=0.08)
FIXTURES = {
    "llama": (tf.LlamaConfig, "llama3", torch.float32, dict(
        COMMON, num_key_value_heads=2, rope_theta=500000.0, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
    "mistral": (tf.MistralConfig, "llama3", torch.float16, dict(
        COMMON, num_key_value_heads=1, sliding_window=None, tie_word_embeddings=False)),
    "qwen2": (tf.Qwen2Config, "qwen2", torch.bfloat16, dict(
        COMMON, num_key_value_heads=2, tie_word_embeddings=False, use_sliding_window=False)),
    "gpt2": (tf.GPT2Config, "gpt2", torch.float32, dict(
        n_embd=64, n_layer=3, n_head=4, n_positions=128, initializer_range=0.08)),
    "gpt_neox": (tf.GPTNeoXConfig, "gpt2", torch.float32, dict(
        COMMON, rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False)),
    "gptj": (tf.GPTJConfig, "gpt2", torch.float32, dict(
        n_embd=64, n_layer=3, n_head=4, n_positions=128, rotary_dim=8, n_inner=128, initializer_range=0.08,
        tie_word_embeddings=False)),
    # Rows with a fifth element carry options (OPTIONS). NORM_NOISE: random norm
    # weights, so a norm applied in the wrong place or as w instead of 1 + w
    # changes the goldens (initialised norms are all 1, or all 0 for Gemma).
    "gemma": (tf.GemmaConfig, "gemma", torch.float32, dict(
        COMMON, head_dim=16, num_key_value_heads=1, hidden_act="gelu_pytorch_tanh",
        tie_word_embeddings=True), NORM_NOISE),
    "gemma2": (tf.Gemma2Config, "gemma", torch.bfloat16, dict(
        COMMON, num_hidden_layers=4, head_dim=16, num_key_value_heads=2, hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=24, attn_logit_softcapping=5.0, final_logit_softcapping=3.0, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"] * 2, tie_word_embeddings=True), NORM_NOISE),
    # heads * head_dim (128) != hidden (64), as in Gemma-3-270M (4 x 256 vs 640).
    "gemma3_text": (tf.Gemma3TextConfig, "gemma", torch.float32, dict(
        COMMON, num_hidden_layers=4, head_dim=32, num_key_value_heads=1, hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=48, sliding_window=4, sliding_window_pattern=2,
        layer_types=["sliding_attention", "full_attention"] * 2,
        rope_theta=1e6, rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
        tie_word_embeddings=True), NORM_NOISE),
    "qwen3": (tf.Qwen3Config, "qwen2", torch.bfloat16, dict(
        COMMON, head_dim=16, num_key_value_heads=2, attention_bias=False, use_sliding_window=False,
        tie_word_embeddings=False), NORM_NOISE),
    "olmo2": (tf.Olmo2Config, "gpt2", torch.float32, dict(
        COMMON, num_key_value_heads=2, tie_word_embeddings=False), NORM_NOISE),
    # pad_token_id: Phi3Config's default (32000) is outside the tiny vocab.
    "phi3": (tf.Phi3Config, "llama2", torch.float16, dict(
        COMMON, num_key_value_heads=2, partial_rotary_factor=1.0, rope_scaling=None,
        original_max_position_embeddings=128, pad_token_id=2, tie_word_embeddings=False), NORM_NOISE),
    # Phi-3-128k's LongRoPE: short factors up to 8 positions, long ones
    # beyond (most test prompts), cos/sin scaled by sqrt(1 + ln 16 / ln 8).
    "phi3_longrope": (tf.Phi3Config, "llama2", torch.float32, dict(
        COMMON, num_key_value_heads=2, partial_rotary_factor=1.0, original_max_position_embeddings=8,
        rope_scaling={"rope_type": "longrope", "short_factor": [1.0 + 0.25 * i for i in range(8)],
                      "long_factor": [2.0 + 1.5 * i for i in range(8)]},
        pad_token_id=2, tie_word_embeddings=False), NORM_NOISE),
    # A Gemma-3 multimodal checkpoint (4B and up): the language model is its
    # text_config, a tiny SigLIP vision tower sits beside it.
    "gemma3_mm": (tf.Gemma3Config, "gemma", torch.float32, dict(
        text_config=dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
                         head_dim=16, intermediate_size=128, max_position_embeddings=128, sliding_window=4,
                         layer_types=["sliding_attention", "full_attention"] * 2, initializer_range=0.08),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        mm_tokens_per_image=4), NORM_NOISE),
    "mistral_window": (tf.MistralConfig, "mistral", torch.float32, dict(
        COMMON, num_key_value_heads=2, sliding_window=4, tie_word_embeddings=False), NORM_NOISE),
}


def module_names(model_type, n_layers):
    """HF module names per site kind, as knowtrace exposes them."""
    if model_type in ("llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text", "qwen3", "olmo2", "phi3"):
        return "model.embed_tokens", "model.layers.{}", "model.layers.{}.self_attn", "model.layers.{}.mlp"
    if model_type == "gemma3":  # Gemma3ForConditionalGeneration: the language model inside
        return ("model.language_model.embed_tokens", "model.language_model.layers.{}",
                "model.language_model.layers.{}.self_attn", "model.language_model.layers.{}.mlp")
    if model_type in ("gpt2", "gptj"):
        return "transformer.wte", "transformer.h.{}", "transformer.h.{}.attn", "transformer.h.{}.mlp"
    if model_type == "gpt_neox":
        return "gpt_neox.embed_in", "gpt_neox.layers.{}", "gpt_neox.layers.{}.attention", "gpt_neox.layers.{}.mlp"
    raise ValueError(model_type)


def first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def perturb_norms(model, name, std):
    """Seeded noise on every norm weight (own generator: the global stream is untouched)."""
    g = torch.Generator().manual_seed(sum(map(ord, name)) + 1)
    with torch.no_grad():
        for mod in model.modules():
            if "Norm" in type(mod).__name__ and getattr(mod, "weight", None) is not None:
                mod.weight.add_(torch.randn(mod.weight.shape, generator=g) * std)


def make(name, cfg_cls, tok_name, store_dtype, kwargs, options=None):
    options = options or {}
    out = os.path.join(OUT_DIR, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    tok = tf.PreTrainedTokenizerFast.from_pretrained(os.path.join(TOK_DIR, tok_name))
    vocab = len(tok)
    specials = {}
    if tok.bos_token_id is not None:
        specials["bos_token_id"] = tok.bos_token_id
    if tok.eos_token_id is not None:
        specials["eos_token_id"] = tok.eos_token_id
    if "text_config" in kwargs:  # a multimodal checkpoint: the language model's sizes live there
        kwargs = dict(kwargs, text_config=dict(kwargs["text_config"], vocab_size=vocab, **specials))
        cfg = cfg_cls(**kwargs, **specials)
    else:
        cfg = cfg_cls(vocab_size=vocab, **kwargs, **specials)
    tcfg = cfg.get_text_config()
    torch.manual_seed(sum(map(ord, name)))
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    if options.get("norm_noise"):
        perturb_norms(model, name, options["norm_noise"])
    # Round weights through the storage dtype so the float32 goldens are
    # exactly what the stored (possibly fp16/bf16) checkpoint holds.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(store_dtype).float())
    model.to(store_dtype).save_pretrained(out)
    tok.save_pretrained(out)
    # Goldens come from the checkpoint as a user would load it (buffers such
    # as rotary frequencies are rebuilt in float32, not cast from storage).
    model = tf.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()

    emb_name, layer_t, attn_t, mlp_t = module_names(cfg.model_type, tcfg.num_hidden_layers)
    mods = dict(model.named_modules())
    records = []  # (site name, tensor)

    def hook_out(site):
        return lambda m, a, o: records.append((site, first(o).detach().clone()))

    def hook_in(site):
        def f(m, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            records.append((site, x.detach().clone()))
        return f

    sites = [emb_name] + [t.format(l) for l in range(tcfg.num_hidden_layers) for t in (layer_t, attn_t, mlp_t)]
    missing = [s for s in sites if s not in mods]
    if missing:
        sys.exit(f"{name}: no module {missing} in {type(model).__name__}")
    print(f"{name}: {type(model).__name__}, sites " + ", ".join(
        f"{s} ({type(mods[s]).__name__})" for s in [emb_name] + [t.format(0) for t in (layer_t, attn_t, mlp_t)]))
    handles = [mods[emb_name].register_forward_hook(hook_out(emb_name))]
    for l in range(tcfg.num_hidden_layers):
        handles.append(mods[layer_t.format(l)].register_forward_pre_hook(hook_in(layer_t.format(l) + ".input"),
                                                                          with_kwargs=True))
        for t in (attn_t, mlp_t, layer_t):
            handles.append(mods[t.format(l)].register_forward_hook(hook_out(t.format(l))))

    ids_all, last_logits, margins = [], [], []
    logits0 = None
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            enc = tok(prompt, return_tensors="pt")
            records_before = len(records)
            logits = model(**enc).logits[0].float()
            if i != 0:
                del records[records_before:]
            else:
                logits0 = logits.numpy()
                for h in handles:
                    h.remove()
            ids_all.append(enc["input_ids"][0].tolist())
            last = logits[-1]
            last_logits.append(last.numpy())
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))

    np.stack(last_logits).astype("<f4").tofile(os.path.join(out, "golden_logits_last.bin"))
    # transformers' own bfloat16 run: the yardstick for knowtrace's bf16 error.
    model_bf16 = tf.AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16,
                                                         attn_implementation="eager").eval()
    with torch.no_grad():
        bf16_last = [model_bf16(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy() for ids in ids_all]
    np.stack(bf16_last).astype("<f4").tofile(os.path.join(out, "golden_logits_last_bf16.bin"))
    logits0.astype("<f4").tofile(os.path.join(out, "golden_logits_all.bin"))
    site_index, offset = [], 0
    with open(os.path.join(out, "golden_sites.bin"), "wb") as f:
        for site, t in records:
            arr = t[0].float().numpy().astype("<f4")  # [tokens, hidden]
            f.write(arr.tobytes())
            site_index.append({"site": site, "shape": list(arr.shape), "offset": offset})
            offset += arr.size
    golden = {
        "model_type": cfg.model_type,
        "vocab_size": vocab,
        "n_layers": tcfg.num_hidden_layers,
        "storage_dtype": str(store_dtype).replace("torch.", ""),
        "prompts": PROMPTS,
        "input_ids": ids_all,
        "top1": [int(np.argmax(l)) for l in last_logits],
        "min_top1_margin": min(margins),
        "sites": site_index,
        "transformers": tf.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
    size = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
    print(f"{name:9s} vocab {vocab} stored {golden['storage_dtype']:8s} {size / 1e6:.2f} MB"
          f"  min top-1 margin {min(margins):.4f}")


def main():
    only = sys.argv[1:]
    unknown = [n for n in only if n not in FIXTURES]
    if unknown:
        sys.exit(f"unknown fixture {unknown}; known: {' '.join(FIXTURES)}")
    for name, row in FIXTURES.items():
        if not only or name in only:
            make(name, *row)


if __name__ == "__main__":
    main()
