#!/usr/bin/env python3
"""ROME's causal tracing re-expressed on Hugging Face transformers: goldens.

For each model and fact this computes, the way ROME's causal_trace.py does
(one forward pass per restoration, a batch whose row 0 is clean and rows
1..S corrupted, numpy RandomState(seed) noise drawn afresh for every run):

  high_score, low_score, answer, subject range and the [tokens, layers]
  score matrix of the five mediators: hidden, hidden_attn_severed,
  hidden_mlp_severed, mlp (window W) and attn (window W),

for the resid_post convention (ROME's) and resid_pre (input of block l).
Severing keeps attention / MLP outputs at token t at their corrupted value
from the *same* noise draw (DESIGN.md section 2); `notebook` writes the two
severed mediators as ROME's causal_trace_frozen_mlp_attn notebook computes
them instead (frozen values from the first draw, scored pass from the second)
into tests/fixtures/traces/<model>_rome_notebook.json.

  python3 tests/reference/rome_reference.py fixtures   # tiny fixture models
  python3 tests/reference/rome_reference.py notebook   # the same, notebook severing
  python3 tests/reference/rome_reference.py fixtures gemma qwen3   # only those
  python3 tests/reference/rome_reference.py smollm2    # needs models/*.gguf
  python3 tests/reference/rome_reference.py gemma3     # 1 fact; needs tests/fixtures/gemma3/filter.json
  python3 tests/reference/rome_reference.py one smollm2 PROMPT SUBJECT [KNOWTRACE.json]
        # one fact as ROME's notebook traces it, vs `knowtrace trace --json` output

Writes tests/fixtures/traces/<model>.json.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import transformers as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import module_names  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "traces")

FIXTURE_FACTS = [
    ("The Eiffel Tower is located in the city of", "The Eiffel Tower"),
    ("Vinson Massif is located in the continent of", "Vinson Massif"),
    ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux"),
    ("Miles Davis plays the", "Miles Davis"),
]
SMOLLM_KNOWN_IDS = [1, 26, 81]  # short prompts: the C++ test traces them in CI
SMOLLM_SAMPLES = 3  # fewer than ROME's 10 to keep the CI test short; the semantics are the same

MEDIATORS = ["hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"]


def names(model):
    """HF module names per site kind: the table make_fixtures.py keeps."""
    return module_names(model.config.model_type, model.config.get_text_config().num_hidden_layers)


def untuple(x):
    return x[0] if isinstance(x, tuple) else x


def decode_tokens(tok, ids):
    return [tok.decode([i]) for i in ids]


def find_token_range(tok, ids, subject, prompt=None):
    """ROME's character-matching subject finder.

    On Llama-2 / Mistral-style SentencePiece decoders each token decoded
    alone loses its leading space, so ROME's matching finds no subject with a
    space in it (ROME itself would fail there). Given the prompt, such a fact
    falls back to prefix_token_range: the rule knowtrace uses for every
    tokenizer (subject_token_range), on which ROME's agrees wherever it works."""
    toks = decode_tokens(tok, ids)
    whole = "".join(toks)
    if prompt is not None and subject not in whole:
        return prefix_token_range(tok, ids, prompt, subject)
    loc0 = whole.index(subject)
    loc, b, e = 0, None, None
    for i, t in enumerate(toks):
        loc += len(t)
        if b is None and loc > loc0:
            b = i
        if e is None and loc >= loc0 + len(subject):
            e = i + 1
            break
    return b, e


def prefix_token_range(tok, ids, prompt, subject):
    """knowtrace's subject_token_range from where each token's text ends: the
    first token ending after the subject's first character to the first one
    reaching its last. Ends come from decoding every prefix of the ids without
    special tokens (BOS covers no text; a SentencePiece-inserted leading space
    is dropped by the decoder, as knowtrace gives it an empty range)."""
    loc0 = prompt.index(subject)
    b = e = None
    for i in range(len(ids)):
        prefix = tok.decode(ids[:i + 1], skip_special_tokens=True)
        if not prompt.startswith(prefix):
            raise ValueError(f"decoded prefix {prefix!r} is not a prefix of {prompt!r}")
        if b is None and len(prefix) > loc0 and len(prefix) > len(tok.decode(ids[:i], skip_special_tokens=True)):
            b = i
        if e is None and len(prefix) >= loc0 + len(subject):
            e = i + 1
            break
    return b, e


def embedding_std(model, tok, subjects):
    """ROME's collect_embedding_std: each subject alone, with special tokens."""
    emb = model.get_input_embeddings()
    vals = [emb(torch.tensor([tok(s)["input_ids"]])).flatten() for s in subjects]
    return torch.cat(vals).std().item()


def output_hook(name, restore_ts, frozen, record, recorded):
    """A forward hook on module `name`: rows 1.. take row 0's value at each
    token of restore_ts and the given values at each (t, values) of frozen;
    with record, the (patched) output is kept in recorded[name]."""
    def f(mod, args, out):
        h = untuple(out)
        for t in restore_ts:
            h[1:, t] = h[0, t]
        for t, vals in frozen:
            h[1:, t] = vals[1:, t]
        if record:
            recorded[name] = h.detach().clone()
        return out
    return f


def last_probs(model, inp, hooks):
    """Next-token probabilities of every row with `hooks` registered, which
    are removed afterwards."""
    try:
        with torch.no_grad():
            logits = model(input_ids=inp).logits[:, -1, :].float()
    finally:
        for h in hooks:
            h.remove()
    return torch.softmax(logits, dim=-1)


class Tracer:
    def __init__(self, model, tok, samples, noise, seed=1, window=10, convention="resid_post"):
        self.m, self.tok, self.S, self.noise, self.seed = model, tok, samples, noise, seed
        self.window, self.convention = window, convention
        self.emb_name, self.layer_t, self.attn_t, self.mlp_t = names(model)
        self.L = model.config.get_text_config().num_hidden_layers
        self.mods = dict(model.named_modules())

    def run(self, ids, b, e, restore=(), freeze=(), record=()):
        """One forward of S+1 rows. restore: (t, module name, 'out'|'in');
        freeze: (t, module name, values [S+1, T, d]); record: module names.
        Returns (p(answer) per row at the last position, recorded outputs)."""
        rs = np.random.RandomState(self.seed)  # ROME reseeds for every run
        inp = torch.tensor([ids] * (self.S + 1))
        hooks, recorded = [], {}

        def embed_hook(mod, args, out):
            noise = torch.from_numpy(rs.randn(self.S, e - b, out.shape[2])) * self.noise
            out[1:, b:e] += noise.to(out.device)
            return out

        hooks.append(self.mods[self.emb_name].register_forward_hook(embed_hook))
        by_mod = {}
        for t, name, where in restore:
            by_mod.setdefault((name, where), []).append(t)
        frozen = {}
        for t, name, vals in freeze:
            frozen.setdefault(name, []).append((t, vals))

        def in_hook(name):
            def f(mod, args, kwargs):
                h = args[0] if args else kwargs["hidden_states"]
                for t in by_mod.get((name, "in"), []):
                    h[1:, t] = h[0, t]
            return f

        names_out = {n for (n, w) in by_mod if w == "out"} | set(frozen) | set(record)
        for n in names_out:
            hooks.append(self.mods[n].register_forward_hook(
                output_hook(n, by_mod.get((n, "out"), []), frozen.get(n, []), n in record, recorded)))
        for n in {n for (n, w) in by_mod if w == "in"}:
            hooks.append(self.mods[n].register_forward_pre_hook(in_hook(n), with_kwargs=True))
        return last_probs(self.m, inp, hooks), recorded

    def trace(self, prompt, subject, mediators=MEDIATORS):
        ids = self.tok(prompt)["input_ids"]
        b, e = find_token_range(self.tok, ids, subject, prompt=prompt)
        T = len(ids)
        p, _ = self.run(ids, b, e)  # row 0 clean
        answer = int(torch.argmax(p[0]))
        high = float(p[0, answer])
        attn_names = [self.attn_t.format(l) for l in range(self.L)]
        mlp_names = [self.mlp_t.format(l) for l in range(self.L)]
        p_low, corrupted = self.run(ids, b, e, record=attn_names + mlp_names)
        low = float(p_low[1:, answer].mean())
        where = "out" if self.convention == "resid_post" else "in"
        out = {"input_ids": ids, "subject_range": [b, e], "answer_id": answer, "answer": self.tok.decode([answer]),
               "high_score": high, "low_score": low, "scores": {}}
        for med in mediators:
            table = np.zeros((T, self.L))
            for t in range(T):
                for l in range(self.L):
                    restore, freeze = [], []
                    if med.startswith("hidden"):
                        restore.append((t, self.layer_t.format(l), where))
                        if med == "hidden_attn_severed":
                            freeze = [(t, n, corrupted[n]) for n in attn_names]
                        elif med == "hidden_mlp_severed":
                            freeze = [(t, n, corrupted[n]) for n in mlp_names]
                    else:
                        tmpl = self.mlp_t if med == "mlp" else self.attn_t
                        lo, hi = max(0, l - self.window // 2), min(self.L, l - (-self.window // 2))
                        restore = [(t, tmpl.format(k), "out") for k in range(lo, hi)]
                    pr, _ = self.run(ids, b, e, restore=restore, freeze=freeze)
                    table[t, l] = float(pr[1:, answer].mean())
            out["scores"][med] = table.tolist()
        return out


def repatch_run(tr, ids, b, e, restore, unpatch):
    """ROME's causal_trace_frozen_mlp_attn notebook (trace_with_repatch),
    written from its description: one RandomState for two passes. Pass 1
    is corrupted with its first draw and records the `unpatch` modules'
    outputs; pass 2 is corrupted with its second draw, restores the clean
    row at `restore` = (t, module) and puts pass 1's outputs back at every
    (t, module) of `unpatch`. Returns p(answer) rows of pass 2."""
    rs = np.random.RandomState(tr.seed)
    inp = torch.tensor([ids] * (tr.S + 1))
    first = {}

    def embed_hook(mod, args, out):
        noise = torch.from_numpy(rs.randn(tr.S, e - b, out.shape[2])) * tr.noise
        out[1:, b:e] += noise.to(out.device)
        return out

    def hook(name, first_pass):
        def f(mod, args, out):
            h = untuple(out)
            if first_pass:
                first[name] = h.detach().clone()
                return out
            for t, n in restore:
                if n == name:
                    h[1:, t] = h[0, t]
            for t, n in unpatch:
                if n == name:
                    h[1:, t] = first[name][1:, t]
            return out
        return f

    mods = {n for _, n in restore} | {n for _, n in unpatch}
    for first_pass in (True, False):
        hooks = [tr.mods[tr.emb_name].register_forward_hook(embed_hook)]
        watched = {n for _, n in unpatch} if first_pass else mods
        hooks += [tr.mods[n].register_forward_hook(hook(n, first_pass)) for n in watched]
        probs = last_probs(tr.m, inp, hooks)
    return probs


def notebook_severing(tr, prompt, subject):
    """The two severed mediators as ROME's notebook computes them (resid_post)."""
    ids = tr.tok(prompt)["input_ids"]
    b, e = find_token_range(tr.tok, ids, subject, prompt=prompt)
    p, _ = tr.run(ids, b, e)
    answer = int(torch.argmax(p[0]))
    out = {"answer_id": answer, "scores": {}}
    for med, tmpl in (("hidden_attn_severed", tr.attn_t), ("hidden_mlp_severed", tr.mlp_t)):
        table = np.zeros((len(ids), tr.L))
        for t in range(len(ids)):
            unpatch = [(t, tmpl.format(k)) for k in range(tr.L)]
            for l in range(tr.L):
                pr = repatch_run(tr, ids, b, e, [(t, tr.layer_t.format(l))], unpatch)
                table[t, l] = float(pr[1:, answer].mean())
        out["scores"][med] = table.tolist()
    return out


def notebook_fixtures(*only):
    """tests/fixtures/traces/<model>_rome_notebook.json: the severed mediators
    under ROME's notebook severing, same settings as fixtures()."""
    models_dir = os.path.join(ROOT, "tests", "fixtures", "models")
    for name in only or sorted(os.listdir(models_dir)):
        d = os.path.join(models_dir, name)
        model = tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        tok = tf.AutoTokenizer.from_pretrained(d)
        std = embedding_std(model, tok, [s for _, s in FIXTURE_FACTS])
        tr = Tracer(model, tok, samples=4, noise=3 * std, window=2)
        golden = {"model": name, "samples": 4, "seed": 1, "noise_level": 3 * std, "severing": "rome-notebook",
                  "facts": []}
        for prompt, subject in FIXTURE_FACTS[:2]:
            golden["facts"].append({"prompt": prompt, "subject": subject, **notebook_severing(tr, prompt, subject)})
        with open(os.path.join(OUT, name + "_rome_notebook.json"), "w") as f:
            json.dump(golden, f, ensure_ascii=False)
        print(f"{name}: rome-notebook severing, {len(golden['facts'])} facts")


def fixtures(*only):
    """Every fixture model, or only the ones named."""
    models_dir = os.path.join(ROOT, "tests", "fixtures", "models")
    present = sorted(os.listdir(models_dir))
    missing = [n for n in only if n not in present]
    if missing:
        sys.exit(f"no fixture model {missing} under {models_dir}: run make_fixtures.py {' '.join(missing)}")
    for name in only or present:
        d = os.path.join(models_dir, name)
        model = tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        tok = tf.AutoTokenizer.from_pretrained(d)
        subjects = [s for _, s in FIXTURE_FACTS]
        std = embedding_std(model, tok, subjects)
        golden = {"model": name, "samples": 4, "window": 2, "seed": 1, "noise_std_multiple": 3,
                  "embedding_std": std, "noise_level": 3 * std, "facts": []}
        for prompt, subject in FIXTURE_FACTS[:3]:
            fact = {"prompt": prompt, "subject": subject}
            for conv in ("resid_post", "resid_pre"):
                tr = Tracer(model, tok, samples=4, noise=3 * std, window=2, convention=conv)
                fact[conv] = tr.trace(prompt, subject)
            golden["facts"].append(fact)
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(golden, f, ensure_ascii=False)
        print(f"{name}: noise {3 * std:.4f}, {len(golden['facts'])} facts")


def first_kept(rule):
    """The first known_1000 fact a filter rule keeps (tests/fixtures/<model>/filter.json)."""
    def ids(name):
        with open(os.path.join(ROOT, "tests", "fixtures", name, "filter.json")) as f:
            return json.load(f)[rule][:1]
    return ids


# name -> .gguf file-name match under models/, where to get it, which known_1000 facts
REAL_MODELS = {
    "smollm2": dict(match="smollm2", get="scripts/get-model.sh smollm2-135m", known_ids=lambda name: SMOLLM_KNOWN_IDS),
    # the fact make_gguf_goldens.py gemma3 finds first under ROME's filter rule
    "gemma3": dict(match="gemma-3", get="scripts/get-model.sh gemma3-270m", known_ids=first_kept("rome")),
}


def load_real(name):
    """(model, tokenizer, known_1000, embedding std over its subjects, path) of a real model's GGUF."""
    import glob
    row = REAL_MODELS[name]
    gguf = sorted(glob.glob(os.path.join(ROOT, "models", "*.gguf")))
    gguf = [g for g in gguf if row["match"] in os.path.basename(g).lower()]
    if not gguf:
        sys.exit(f"no {name} .gguf under models/: run {row['get']}")
    path = gguf[0]
    data = os.environ.get("KNOWTRACE_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    known = json.load(open(os.path.join(data, "known_1000.json")))
    model = tf.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                    dtype=torch.float32, attn_implementation="eager").eval()
    tok = tf.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    return model, tok, known, embedding_std(model, tok, [k["subject"] for k in known]), path


def real_model(name):
    model, tok, known, std, path = load_real(name)
    row = REAL_MODELS[name]
    golden = {"model": os.path.basename(path), "samples": SMOLLM_SAMPLES, "window": 10, "seed": 1, "noise_std_multiple": 3,
              "embedding_std": std, "noise_level": 3 * std, "facts": []}
    tr = Tracer(model, tok, samples=SMOLLM_SAMPLES, noise=3 * std, window=10)
    for kid in row["known_ids"](name):
        k = known[kid]
        assert k["known_id"] == kid
        t0 = time.time()
        res = tr.trace(k["prompt"], k["subject"])
        golden["facts"].append({"known_id": kid, "prompt": k["prompt"], "subject": k["subject"], "resid_post": res,
                                "seconds": time.time() - t0})
        print(f"known {kid}: answer {res['answer']!r} high {res['high_score']:.4f} low {res['low_score']:.4f}"
              f" ({time.time() - t0:.0f} s)", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(golden, f, ensure_ascii=False)


def one_fact(name, prompt, subject, knowtrace_json=None):
    """One fact on a real model as ROME's notebook traces it (noise s3 over
    every known_1000 subject, 10 samples, window 10); with the JSON that
    `knowtrace trace --json` printed for the same fact, the largest cell
    difference per mediator."""
    model, tok, known, std, _ = load_real(name)
    res = Tracer(model, tok, samples=10, noise=3 * std, window=10).trace(prompt, subject)
    print(f"noise level {3 * std:.6f} (3 x std of {len(known)} known_1000 subjects); answer {res['answer']!r}"
          f" high {res['high_score']:.6f} low {res['low_score']:.6f}")
    if knowtrace_json:
        kt = json.load(open(knowtrace_json))
        print(f"knowtrace: noise level {kt['noise_level']:.6f}, high {kt['high_score']:.6f}, low {kt['low_score']:.6f}")
        for med, want in res["scores"].items():
            d = float(np.max(np.abs(np.array(kt["scores"][med]) - np.array(want))))
            print(f"  {med:<20} max |knowtrace - ROME| = {d:.3g}")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "one":
        one_fact(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
        sys.exit(0)
    what = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    if what == "fixtures":
        fixtures(*sys.argv[2:])
    elif what == "notebook":
        notebook_fixtures(*sys.argv[2:])
    elif what in REAL_MODELS and len(sys.argv) == 2:
        real_model(what)
    else:
        sys.exit(f"usage: {sys.argv[0]} fixtures [model ...] | notebook [model ...] | " + " | ".join(REAL_MODELS))
