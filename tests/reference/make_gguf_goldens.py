#!/usr/bin/env python3
"""Goldens for the real default model (SmolLM2-135M-Instruct, GGUF Q4_1).

transformers loads the same .gguf (from_pretrained(..., gguf_file=...),
which dequantizes to float32) and writes tests/fixtures/smollm2/:

  token_ids.json   ids of every known_1000 prompt and subject, keyed by
                   known_id (ids only: the data set is not in the repo)
  logprobs.json    top-20 last-position log-probabilities for 24 prompts

Run:  KNOWTRACE_DATA_DIR=../shared/data python3 tests/reference/make_gguf_goldens.py
Needs: torch, transformers, gguf, accelerate (PyPI); models/ from
scripts/get-model.sh smollm2-135m.
"""
import glob
import json
import os

import torch
import transformers as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2")
N_PROMPTS = 24


def main():
    path = [g for g in glob.glob(os.path.join(ROOT, "models", "*.gguf")) if "smollm2" in g.lower()][0]
    d, f = os.path.dirname(path), os.path.basename(path)
    data = os.environ.get("KNOWTRACE_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    known = json.load(open(os.path.join(data, "known_1000.json"), encoding="utf-8"))
    tok = tf.AutoTokenizer.from_pretrained(d, gguf_file=f)
    ids = {str(k["known_id"]): {"prompt": tok(k["prompt"])["input_ids"], "subject": tok(k["subject"])["input_ids"]}
           for k in known}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "token_ids.json"), "w") as fh:
        json.dump({"model": f, "transformers": tf.__version__, "ids": ids}, fh, separators=(",", ":"))

    model = tf.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
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
    with open(os.path.join(OUT, "logprobs.json"), "w") as fh:
        json.dump({"model": f, "transformers": tf.__version__, "prompts": rows}, fh, indent=1)
    print(f"{len(ids)} token-id records, {len(rows)} log-prob rows")


if __name__ == "__main__":
    main()
