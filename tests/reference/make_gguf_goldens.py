#!/usr/bin/env python3
"""Goldens for the real models (GGUF files under models/), one row per model.

transformers loads the same .gguf (from_pretrained(..., gguf_file=...),
which dequantizes to float32) and writes tests/fixtures/<model>/:

  token_ids.json   ids of every known_1000 prompt and subject, keyed by
                   known_id (ids only: the data set is not in the repo);
                   SmolLM2 only (Gemma-3's tokenizer goldens are
                   tokenizer_golden.json, written by make_gemma_tokenizer_goldens.py)
  logprobs.json    top-20 last-position log-probabilities for 24 prompts
  filter.json      Gemma-3 only: {rule: [known_id, ...]}, the known_1000 facts
                   whose greedy next token is the attribute, by two rules:
                   rome         decode(argmax).strip() == attribute
                   first-token  argmax == first id of " " + attribute (no BOS)

Run:  KNOWTRACE_DATA_DIR=../shared/data python3 tests/reference/make_gguf_goldens.py [smollm2|gemma3 ...]
(no name: smollm2). Needs: torch, transformers, gguf, accelerate (PyPI); models/ from
scripts/get-model.sh smollm2-135m (and gemma3-270m).
"""
import glob
import json
import os
import sys
import time

import torch
import transformers as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N_PROMPTS = 24

# name -> file-name match under models/, outputs, extra from_pretrained kwargs
REAL_MODELS = {
    "smollm2": dict(match="smollm2", token_ids=True, filter=False, load={}),
    # eager: the attention the fixture goldens and the C++ reference use
    "gemma3": dict(match="gemma-3", token_ids=False, filter=True, load=dict(attn_implementation="eager")),
}


def find_gguf(match):
    found = sorted(g for g in glob.glob(os.path.join(ROOT, "models", "*.gguf")) if match in os.path.basename(g).lower())
    if not found:
        sys.exit(f"no *{match}*.gguf under models/: see scripts/get-model.sh")
    return found[0]


def load_known():
    data = os.environ.get("KNOWTRACE_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    return json.load(open(os.path.join(data, "known_1000.json"), encoding="utf-8"))


def describe(model):
    c = model.config
    keys = ["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
            "layer_types", "sliding_window", "rope_parameters", "query_pre_attn_scalar", "rms_norm_eps",
            "attn_logit_softcapping", "final_logit_softcapping", "hidden_activation", "hidden_act",
            "tie_word_embeddings"]
    print(type(model).__name__, {k: getattr(c, k) for k in keys if hasattr(c, k)})
    emb = model.get_input_embeddings()
    print("embeddings:", type(emb).__name__, "scale", getattr(emb, "scalar_embed_scale", 1.0))


def known_filter(model, tok, known):
    """Which facts each rule keeps; one prompt per forward (no padding)."""
    kept = {"rome": [], "first-token": []}
    t0 = time.time()
    with torch.inference_mode():
        for k in known:
            inp = torch.tensor([tok(k["prompt"])["input_ids"]])
            top = int(model(input_ids=inp, logits_to_keep=1).logits[0, -1].argmax())
            if tok.decode([top]).strip() == k["attribute"]:
                kept["rome"].append(k["known_id"])
            if top == tok(" " + k["attribute"], add_special_tokens=False)["input_ids"][0]:
                kept["first-token"].append(k["known_id"])
    print(f"filter: {len(known)} facts in {time.time() - t0:.0f} s; kept " +
          ", ".join(f"{r} {len(v)}" for r, v in kept.items()))
    return kept


def make(name, match, token_ids, filter, load):
    out = os.path.join(ROOT, "tests", "fixtures", name)
    path = find_gguf(match)
    d, f = os.path.dirname(path), os.path.basename(path)
    known = load_known()
    tok = tf.AutoTokenizer.from_pretrained(d, gguf_file=f)
    os.makedirs(out, exist_ok=True)
    if token_ids:
        ids = {str(k["known_id"]): {"prompt": tok(k["prompt"])["input_ids"], "subject": tok(k["subject"])["input_ids"]}
               for k in known}
        with open(os.path.join(out, "token_ids.json"), "w") as fh:
            json.dump({"model": f, "transformers": tf.__version__, "ids": ids}, fh, separators=(",", ":"))
        print(f"{len(ids)} token-id records")

    model = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, **load).eval()
    describe(model)
    # Every 50th fact: a spread of relations, the same on every run.
    chosen = known[::50][:N_PROMPTS]
    rows = []
    with torch.no_grad():
        for k in chosen:
            inp = torch.tensor([tok(k["prompt"])["input_ids"]])
            lp = torch.log_softmax(model(input_ids=inp).logits[0, -1].float(), -1)
            top = torch.topk(lp, 20)
            rows.append({"known_id": k["known_id"], "top_ids": top.indices.tolist(),
                         "top_logprobs": top.values.tolist()})
    with open(os.path.join(out, "logprobs.json"), "w") as fh:
        json.dump({"model": f, "transformers": tf.__version__, "prompts": rows}, fh, indent=1)
    print(f"{name}: {len(rows)} log-prob rows")
    if filter:
        kept = known_filter(model, tok, known)
        with open(os.path.join(out, "filter.json"), "w") as fh:
            json.dump(kept, fh)


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    names = sys.argv[1:] or ["smollm2"]
    unknown = [n for n in names if n not in REAL_MODELS]
    if unknown:
        sys.exit(f"unknown model {unknown}; known: {' | '.join(REAL_MODELS)}")
    for n in names:
        make(n, **REAL_MODELS[n])


if __name__ == "__main__":
    main()
