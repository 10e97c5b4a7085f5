#!/usr/bin/env python3
"""Goldens for knowtrace's generalised interventions on the tiny fixture models.

For every fixture model and two facts (F0 "The Eiffel Tower is located in the
city of" -> Paris, counterfactual Rome; F1 "The mother tongue of Danielle
Darrieux is" -> French, counterfactual English) this computes, with Hugging
Face transformers (eager attention, float32) and forward hooks:

  * restoration tables [T, L] of the five mediators hidden,
    hidden_attn_severed, hidden_mlp_severed, mlp (window W) and attn
    (window W), resid_post convention, severing with the same noise draw
    (as rome_reference.Tracer.trace), for
      - two corruptions: `noise` (ROME: S+1 rows of the same input, rows 1..S
        get numpy RandomState(seed) noise on the subject's embeddings, drawn
        afresh for every forward) and `prompt` (counterfactual prompt: 2 rows,
        row 0 the clean input, row 1 the prompt with the subject replaced by
        the first candidate subject of the same token count; no noise),
      - two targets: `first_token` (the clean argmax at the last prompt
        token) and `answer` (the attribute's tokens teacher-forced after the
        prompt; restoration cells are still the prompt tokens only),
      - four metrics from one forward per cell: prob, logprob, logit_diff
        (answer vs the counterfactual answer's first token, first scored
        position) and kl (mean over scored positions of KL(clean || row)),
    each cell the mean over the corrupted rows; high = the clean row, low =
    the corrupted rows without restoration;

  * attention knockout (Geva et al. 2023) on the clean input: for each layer
    l, the last prompt token's attention to the subject tokens, to the other
    earlier tokens, or to itself is removed (pre-softmax score set to
    finfo(float32).min through the additive 4-D attention_mask the eager
    attention modules receive) in layers [l - K//2, l + K//2] (clipped);
    score = (p_knock - p_clean) / p_clean of the target's prob.

Settings: S = 4 samples, noise 3 x the embedding std of rome_reference's
FIXTURE_FACTS subjects, seed 1, W = 2, K = 3. As a check, the noise /
first_token prob tables of F0 are compared with the resid_post tables of
tests/fixtures/traces/<model>.json (rome_reference.py's goldens).

  python3 tests/reference/interventions_reference.py            # every fixture model
  python3 tests/reference/interventions_reference.py gpt2 qwen3 # only those

Writes tests/fixtures/traces/<model>_interventions.json.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import transformers as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rome_reference import FIXTURE_FACTS, embedding_std, find_token_range, names, output_hook  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "traces")

SAMPLES, SEED, WINDOW, KNOCKOUT_WINDOW, NOISE_MULTIPLE = 4, 1, 2, 3, 3
MEDIATORS = ["hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn"]
METRICS = ["prob", "logprob", "logit_diff", "kl"]
KNOCKOUTS = ["knockout_subject", "knockout_nonsubject", "knockout_last"]
GOLDEN_TOL = 1e-6

# (prompt, subject, attribute, counterfactual answer, candidate subjects for the counterfactual prompt)
FACTS = [
    ("The Eiffel Tower is located in the city of", "The Eiffel Tower", "Paris", "Rome",
     ["The Colosseum", "Big Ben", "The Louvre", "The Kremlin", "Mount Fuji", "The Parthenon", "Times Square",
      "The Taj Mahal", "The Acropolis", "Stonehenge", "The Pentagon", "The Sphinx", "Notre Dame", "The Pantheon",
      "Hyde Park", "The Vatican", "The Alhambra", "Buckingham Palace", "The Statue of Liberty",
      "The Brandenburg Gate", "The Golden Gate Bridge", "The Sagrada Familia", "The Leaning Tower",
      "The Great Wall", "The Space Needle", "The Empire State", "The Hagia Sophia", "The Spanish Steps",
      "The Rialto Bridge", "Mount Kilimanjaro", "The Manneken Pis", "Neuschwanstein"]),
    ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "French", "English",
     ["Marie Curie", "Pablo Picasso", "Leo Tolstoy", "Albert Einstein", "Frida Kahlo", "Victor Hugo",
      "Franz Kafka", "Sophia Loren", "Charles Dickens", "Jane Austen", "Isaac Newton", "Dante Alighieri",
      "Anton Chekhov", "Greta Garbo", "Ingrid Bergman", "Maria Callas", "Umberto Eco", "Vincent van Gogh",
      "Catherine Deneuve", "Miguel de Cervantes", "Johann Wolfgang Goethe", "Fyodor Dostoevsky",
      "Simone de Beauvoir", "Gabriel Garcia Marquez"]),
]


def window(l, w, n_layers):
    """Layers [l - w//2, l - (-w//2)) clipped to the model: ROME's window rule."""
    return range(max(0, l - w // 2), min(n_layers, l - (-w // 2)))


def block_hook(q, keys):
    """Forward pre-hook (with_kwargs) removing query q's attention to `keys`:
    a copy of the additive 4-D float mask with [:, :, q, keys] at finfo.min."""
    def f(mod, args, kwargs):
        m = kwargs.get("attention_mask")
        if not (torch.is_tensor(m) and m.dim() == 4 and m.dtype.is_floating_point):
            raise RuntimeError(f"{type(mod).__name__}: attention_mask is {type(m).__name__}"
                               f" {getattr(m, 'dtype', '')} {tuple(getattr(m, 'shape', ()))}, not a 4-D float mask")
        m = m.clone()
        if keys:
            m[:, :, q, list(keys)] = torch.finfo(m.dtype).min
        return args, dict(kwargs, attention_mask=m)
    return f


class Runner:
    def __init__(self, model, tok, noise):
        self.m, self.tok, self.noise = model, tok, noise
        self.emb_name, self.layer_t, self.attn_t, self.mlp_t = names(model)
        self.L = model.config.get_text_config().num_hidden_layers
        self.mods = dict(model.named_modules())
        self.attn_names = [self.attn_t.format(l) for l in range(self.L)]
        self.mlp_names = [self.mlp_t.format(l) for l in range(self.L)]

    def forward(self, rows, keep, noise_range=None, restore=(), freeze=(), record=(), block=None, attn_probe=None):
        """One forward of the batch `rows` (id lists of one length).

        noise_range (b, e): rows 1.. get RandomState(SEED) noise at embedding
        positions [b, e) as rome_reference.Tracer.run. restore: (t, module):
        row 0's output at token t copied into rows 1..; freeze: (t, module,
        values [R, len, d]): rows 1.. get values[1:, t]; record: modules whose
        outputs are returned; block (layers, q, keys): attention knockout;
        attn_probe: dict filled with each attention module's weights.
        Returns (float32 logits [R, keep, V] of the last `keep` positions, recorded)."""
        inp = torch.tensor(rows)
        hooks, recorded = [], {}
        if noise_range is not None:
            b, e = noise_range
            rs = np.random.RandomState(SEED)  # reseeded for every forward, as ROME

            def embed_hook(mod, args, out):
                noise = torch.from_numpy(rs.randn(len(rows) - 1, e - b, out.shape[2])) * self.noise
                out[1:, b:e] += noise.to(out.device)
                return out
            hooks.append(self.mods[self.emb_name].register_forward_hook(embed_hook))
        restored, frozen = {}, {}
        for t, name in restore:
            restored.setdefault(name, []).append(t)
        for t, name, vals in freeze:
            frozen.setdefault(name, []).append((t, vals))

        for n in set(restored) | set(frozen) | set(record):
            hooks.append(self.mods[n].register_forward_hook(
                output_hook(n, restored.get(n, []), frozen.get(n, []), n in record, recorded)))
        if block is not None:
            layers, q, keys = block
            for k in layers:
                hooks.append(self.mods[self.attn_names[k]].register_forward_pre_hook(block_hook(q, keys),
                                                                                      with_kwargs=True))
        if attn_probe is not None:
            def probe(k):
                def f(mod, args, out):
                    attn_probe[k] = out[1].detach().clone()
                return f
            for k in range(self.L):
                hooks.append(self.mods[self.attn_names[k]].register_forward_hook(probe(k)))
        try:
            with torch.no_grad():
                logits = self.m(input_ids=inp, logits_to_keep=keep).logits.float()
        finally:
            for h in hooks:
                h.remove()
        assert logits.shape[1] == keep
        return logits, recorded


def row_metrics(logits, targets, counter_id, clean_lp):
    """Per-row metrics (float64 numpy arrays [R]) of logits [R, n, V] at the n
    scored positions; targets: n token ids; clean_lp [n, V] the clean run's
    log-probabilities there."""
    lg = logits.double()
    lp = torch.log_softmax(lg, dim=-1)
    n = len(targets)
    tgt = lp[:, torch.arange(n), torch.tensor(targets)]  # [R, n]
    kl = (clean_lp.exp() * (clean_lp - lp)).sum(-1).mean(-1)
    return {"prob": tgt.sum(-1).exp().numpy(), "logprob": tgt.mean(-1).numpy(),
            "logit_diff": (lg[:, 0, targets[0]] - lg[:, 0, counter_id]).numpy(), "kl": kl.numpy()}


def restoration(run, rows, T, targets, counter_id, noise_range):
    """high, low and the [T, L] tables of every mediator and metric for one
    corruption (rows 1.. of `rows`, plus noise when noise_range is given)."""
    n = len(targets)
    logits, corrupted = run.forward(rows, n, noise_range, record=run.attn_names + run.mlp_names)
    clean_lp = torch.log_softmax(logits[0].double(), dim=-1)
    base = row_metrics(logits, targets, counter_id, clean_lp)
    out = {"high": {k: float(v[0]) for k, v in base.items()},
           "low": {k: float(v[1:].mean()) for k, v in base.items()}, "scores": {}}
    for med in MEDIATORS:
        tables = {k: np.zeros((T, run.L)) for k in METRICS}
        for t in range(T):
            for l in range(run.L):
                freeze = []
                if med.startswith("hidden"):
                    restore = [(t, run.layer_t.format(l))]
                    if med == "hidden_attn_severed":
                        freeze = [(t, nm, corrupted[nm]) for nm in run.attn_names]
                    elif med == "hidden_mlp_severed":
                        freeze = [(t, nm, corrupted[nm]) for nm in run.mlp_names]
                else:
                    tmpl = run.mlp_t if med == "mlp" else run.attn_t
                    restore = [(t, tmpl.format(k)) for k in window(l, WINDOW, run.L)]
                lg, _ = run.forward(rows, n, noise_range, restore=restore, freeze=freeze)
                for k, v in row_metrics(lg, targets, counter_id, clean_lp).items():
                    tables[k][t, l] = v[1:].mean()
        out["scores"][med] = {k: v.tolist() for k, v in tables.items()}
    return out


def knockout(run, inp, T, targets, b, e):
    """Attention knockout of the last prompt token's query (q = T-1), clean input, 1 row."""
    n, q = len(targets), T - 1

    def prob(block=None, probe=None):
        lg, _ = run.forward([inp], n, block=block, attn_probe=probe)
        lp = torch.log_softmax(lg[0].double(), dim=-1)
        return float(lp[torch.arange(n), torch.tensor(targets)].sum().exp())

    clean_w = {}
    p_clean = prob(probe=clean_w)
    sets = {"knockout_subject": list(range(b, e)),
            "knockout_nonsubject": [t for t in range(q) if not b <= t < e],
            "knockout_last": [q]}
    out = {"high": p_clean, "scores": {k: [] for k in KNOCKOUTS}}
    for l in range(run.L):
        layers = list(window(l, KNOCKOUT_WINDOW, run.L))
        empty = prob(block=(layers, q, []))
        assert empty == p_clean, f"empty knockout set changed p: {empty!r} vs {p_clean!r}"
        for kind in KNOCKOUTS:
            keys, w = sets[kind], {}
            p = prob(block=(layers, q, keys), probe=w)
            # the edit took effect: q's weights on the keys are 0 in every knocked layer; in the first one
            # (same inputs as the clean run) the other queries' weights are unchanged
            for k in layers:
                assert bool((w[k][:, :, q, keys] == 0).all()), f"layer {k}: {kind} attention not removed"
                assert torch.allclose(w[k].sum(-1), torch.ones(()), atol=1e-5)
            others = [i for i in range(len(inp)) if i != q]
            assert torch.equal(w[layers[0]][:, :, others], clean_w[layers[0]][:, :, others])
            if all(bool((clean_w[k][:, :, q, keys] == 0).all()) for k in layers):
                assert p == p_clean  # nothing to remove (e.g. keys outside a sliding window)
            out["scores"][kind].append((p - p_clean) / p_clean)
    return out


def counterfactual(tok, prompt, subject, candidates, ids):
    for c in candidates:
        cf = prompt.replace(subject, c)
        cf_ids = tok(cf)["input_ids"]
        if len(cf_ids) == len(ids) and cf_ids != ids:
            return cf, cf_ids
    sys.exit(f"no counterfactual subject for {prompt!r} has {len(ids)} tokens with this tokenizer:"
             " extend the candidate list")


def trace_fact(run, tok, fact):
    prompt, subject, attribute, cf_answer, candidates = fact
    ids = tok(prompt)["input_ids"]
    T = len(ids)
    b, e = find_token_range(tok, ids, subject, prompt=prompt)
    cf_prompt, cf_ids = counterfactual(tok, prompt, subject, candidates, ids)
    answer_ids = tok(" " + attribute, add_special_tokens=False)["input_ids"]
    counter_id = tok(" " + cf_answer, add_special_tokens=False)["input_ids"][0]
    lg, _ = run.forward([ids], 1)
    answer_id = int(torch.argmax(lg[0, -1]))
    out = {"prompt": prompt, "subject": subject, "attribute": attribute, "counterfactual_prompt": cf_prompt,
           "counterfactual_answer": cf_answer, "input_ids": ids, "counterfactual_ids": cf_ids,
           "subject_range": [b, e], "answer_id": answer_id, "answer_ids": answer_ids, "counter_id": counter_id}
    targets = {"first_token": (ids, cf_ids, [answer_id]),
               "answer": (ids + answer_ids[:-1], cf_ids + answer_ids[:-1], answer_ids)}
    for tname, (inp, cf_inp, tg) in targets.items():
        out["noise_" + tname] = restoration(run, [inp] * (SAMPLES + 1), T, tg, counter_id, (b, e))
    for tname, (inp, cf_inp, tg) in targets.items():
        out["prompt_" + tname] = restoration(run, [inp, cf_inp], T, tg, counter_id, None)
    for tname, (inp, cf_inp, tg) in targets.items():
        out["knockout_" + tname] = knockout(run, inp, T, tg, b, e)
    return out


def golden_diff(name, golden, fact):
    """max |this - rome_reference golden| over the noise/first_token prob tables of F0."""
    path = os.path.join(OUT, name + ".json")
    if not os.path.exists(path):
        return None
    want = json.load(open(path))
    g = [f for f in want["facts"] if f["prompt"] == fact["prompt"]][0]["resid_post"]
    assert abs(want["noise_level"] - golden["noise_level"]) < 1e-12, "noise level differs from the golden's"
    assert g["answer_id"] == fact["answer_id"] and g["subject_range"] == fact["subject_range"]
    got = fact["noise_first_token"]
    d = max(abs(got["high"]["prob"] - g["high_score"]), abs(got["low"]["prob"] - g["low_score"]))
    for med in MEDIATORS:
        d = max(d, float(np.max(np.abs(np.array(got["scores"][med]["prob"]) - np.array(g["scores"][med])))))
    return d


def model_golden(name):
    d = os.path.join(MODELS, name)
    model = tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    tok = tf.AutoTokenizer.from_pretrained(d)
    noise = NOISE_MULTIPLE * embedding_std(model, tok, [s for _, s in FIXTURE_FACTS])
    run = Runner(model, tok, noise)
    golden = {"model": name, "samples": SAMPLES, "window": WINDOW, "seed": SEED, "noise_level": noise,
              "knockout_window": KNOCKOUT_WINDOW, "facts": [trace_fact(run, tok, f) for f in FACTS]}
    nonzero = [v for f in golden["facts"] for t in ("first_token", "answer")
               for k in KNOCKOUTS for v in f["knockout_" + t]["scores"][k] if v != 0]
    assert nonzero, f"{name}: every knockout score is 0: the mask edit had no effect"
    return golden


def main(only):
    present = sorted(os.listdir(MODELS))
    missing = [n for n in only if n not in present]
    if missing:
        sys.exit(f"no fixture model {missing} under {MODELS}")
    os.makedirs(OUT, exist_ok=True)
    worst = 0.0
    for name in only or present:
        t0 = time.time()
        golden = model_golden(name)
        path = os.path.join(OUT, name + "_interventions.json")
        with open(path, "w") as f:
            json.dump(golden, f, ensure_ascii=False)
        diff = golden_diff(name, golden, golden["facts"][0])
        cfs = " | ".join(repr(f["counterfactual_prompt"]) for f in golden["facts"])
        print(f"{name}: {os.path.getsize(path) // 1024} KiB, {time.time() - t0:.1f} s,"
              f" max |noise prob - {name}.json| = {diff if diff is None else f'{diff:.2g}'}; {cfs}", flush=True)
        if diff is not None:
            worst = max(worst, diff)
    if worst > GOLDEN_TOL:
        sys.exit(f"noise/first_token prob tables differ from rome_reference's goldens by {worst:.3g}")


if __name__ == "__main__":
    main(sys.argv[1:])
