#!/usr/bin/env python3
"""Goldens for the Python package's callable patches: the same intervention
done with plain transformers forward hooks on the fixture models.

    python3 tests/reference/make_python_goldens.py

For each model: the MLP output of layer 1 becomes `value * 0.5 + 0.25` at
every position, and the block output of layer 0 has position 2 zeroed. The
last-position logits (fp32) of both runs are written to
tests/fixtures/python/patch_goldens.json; tests/python/test_api.py applies
the same edits as Python callables through knowtrace's Model.run.
"""
import json
import os

import torch
import transformers as tf

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import module_names  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT = "The Eiffel Tower is located in the city of"
MODELS = ["gpt2", "llama", "gemma3_text", "qwen3", "gpt_neox"]


def untuple(x):
    return x[0] if isinstance(x, tuple) else x


def hooked_logits(model, ids, module, edit):
    mod = dict(model.named_modules())[module]

    def hook(m, args, out):
        h = untuple(out)
        new = edit(h)
        if isinstance(out, tuple):
            return (new,) + tuple(out[1:])
        return new

    handle = mod.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(input_ids=ids).logits[0, -1].float()
    finally:
        handle.remove()


def main():
    out = {"prompt": PROMPT, "models": {}}
    for name in MODELS:
        d = os.path.join(ROOT, "tests", "fixtures", "models", name)
        model = tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        tok = tf.AutoTokenizer.from_pretrained(d)
        ids = torch.tensor([tok(PROMPT)["input_ids"]])
        _, layer_t, _, mlp_t = module_names(model.config.model_type, model.config.num_hidden_layers)
        scaled = hooked_logits(model, ids, mlp_t.format(1), lambda h: h * 0.5 + 0.25)

        def zero_pos2(h):
            h = h.clone()
            h[:, 2] = 0
            return h

        zeroed = hooked_logits(model, ids, layer_t.format(0), zero_pos2)
        out["models"][name] = {
            "ids": ids[0].tolist(),
            "mlp_site": mlp_t.format(1),
            "layer_site": layer_t.format(0),
            "mlp_scaled_logits": scaled.tolist(),
            "layer0_pos2_zeroed_logits": zeroed.tolist(),
        }
        print(name, mlp_t.format(1), layer_t.format(0))
    path = os.path.join(ROOT, "tests", "fixtures", "python", "patch_goldens.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
