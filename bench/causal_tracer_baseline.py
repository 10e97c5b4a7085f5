#!/usr/bin/env python3
"""Baseline (b): the PyPI package causal-tracer (1.1.0), timed.

causal-tracer batches restorations: every (restoration, noise sample) pair
is one row, --batch-size rows per forward pass (the package's default 32).
It traces three of the five mediators - kind "hidden" (window 1, ROME's
resid_post convention), "mlp" and "attention" (window W) - and has no
severed-hidden mediators (hidden_attn_severed, hidden_mlp_severed) and no
resid_pre convention. Seconds per fact here are therefore for 3 mediators;
bench/python_baselines.sh also reports the ratio per traced cell.

Install (see bench/requirements.txt): causal-tracer 1.1.0 declares
transformers<5 but runs unchanged on transformers 5.x; install it with
--no-deps so the transformers used by the other runs stays:
  pip install matplotlib==3.11.2 tqdm==4.70.1 && pip install --no-deps causal-tracer==1.1.0

  python3 bench/causal_tracer_baseline.py --facts 10 --samples 10 --dtype float32 --threads 2

GGUF files load through transformers (dequantised), as for baseline (a).
The layer names are given explicitly (LayerConfig) from the same table as
rome_reference.py, so every architecture knowtrace supports works, not only
the package's built-in gpt2/gptj/llama.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

sys.path.insert(0, os.path.join(common.ROOT, "tests", "reference"))

KINDS = ["hidden", "mlp", "attention"]  # causal-tracer's names; knowtrace: hidden, mlp, attn


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (package default 32)")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of hidden,mlp,attention")
    p.add_argument("--check", action="store_true",
                   help="also compare fact 0's scores with rome_reference.py's Tracer (slow on real models)")
    args = p.parse_args()

    torch, dtype, device = common.setup_torch(args)
    try:
        import causal_tracer
        from causal_tracer import CausalTracer, LayerConfig
    except ImportError as e:
        common.die(f"causal-tracer is not importable ({e}); install it: bash bench/setup_venv.sh, or pip install "
                   "matplotlib==3.11.2 tqdm==4.70.1 && pip install --no-deps causal-tracer==1.1.0 "
                   "(bench/requirements.txt; --no-deps: its metadata asks for transformers<5, which it does not need)",
                   code=3)
    version = getattr(causal_tracer, "__version__", "?")
    from rome_reference import names
    kinds = common.choices(args.kinds, KINDS, "causal-tracer kind")
    data, facts = common.load_facts(args.data, args.facts)

    t0 = time.perf_counter()
    model, tok = common.load_model(args.model, dtype, device, args.attn)
    load_s = time.perf_counter() - t0
    L = model.config.num_hidden_layers
    try:
        emb, layer_t, attn_t, mlp_t = names(model)
    except ValueError:
        common.die(f"model_type {model.config.model_type!r} has no layer-name table in rome_reference.py")
    lc = LayerConfig(hidden_layers_matcher=layer_t.replace("{}", "{num}"),
                     attention_layers_matcher=attn_t.replace("{}", "{num}"),
                     mlp_layers_matcher=mlp_t.replace("{}", "{num}"), embedding_layer=emb)
    tracer = CausalTracer(model, tok, layer_config=lc, noise=args.noise, device=device)
    if tracer.count_layers() != L:
        common.die(f"causal-tracer found {tracer.count_layers()} layers, the config says {L}")
    print(f"causal_tracer_baseline: causal-tracer {version}, {args.model} ({L} layers) loaded in {load_s:.1f} s "
          f"on {device}, {args.dtype}, {torch.get_num_threads()} threads", file=sys.stderr, flush=True)

    def flow(k, kind, **kw):
        return tracer.calculate_hidden_flow(k["prompt"], subject=k["subject"], kind=kind, samples=args.samples,
                                            window=1 if kind == "hidden" else args.window,
                                            batch_size=args.batch_size, **kw)

    warm_s = 0.0
    if not args.no_warmup:  # one small untimed trace: subject tokens of layer 0 only
        t0 = time.perf_counter()
        flow(facts[0], "hidden", start_layer=0, end_layer=1, patch_subject_tokens_only=True)
        common.sync(torch, device)
        warm_s = time.perf_counter() - t0

    rows, first = [], {}
    for i, k in enumerate(facts):
        per_kind, T = {}, None
        common.sync(torch, device)
        t_fact = time.perf_counter()
        for kind in kinds:
            t0 = time.perf_counter()
            f = flow(k, kind)
            common.sync(torch, device)
            per_kind[kind] = time.perf_counter() - t0
            T = int(f.scores.shape[0])
            if i == 0:
                first[kind] = f
        s = time.perf_counter() - t_fact
        rows.append({"index": i, "prompt": k["prompt"], "tokens": T, "seconds": s, "seconds_per_kind": per_kind,
                     "restorations": len(kinds) * T * L})
        print(f"  fact {i}: {T} tokens, {s:.2f} s ({', '.join(f'{a} {b:.2f}' for a, b in per_kind.items())})",
              file=sys.stderr, flush=True)

    total = sum(r["seconds"] for r in rows)
    out = {"baseline": "causal_tracer", "package_version": version, "model": args.model, "data": data,
           "facts": len(rows), "seconds_per_fact": total / max(1, len(rows)), "seconds_total": total,
           "per_fact_seconds": [r["seconds"] for r in rows], "dtype": args.dtype, "device": str(device),
           "threads": torch.get_num_threads(), "samples": args.samples, "window": args.window, "noise": args.noise,
           "mediators": ["hidden" if k == "hidden" else "mlp" if k == "mlp" else "attn" for k in kinds],
           "mediators_missing": ["hidden_attn_severed", "hidden_mlp_severed"], "batch_size": args.batch_size,
           "attn_implementation": args.attn, "layers": L, "load_seconds": load_s, "warmup_seconds": warm_s,
           "environment": common.environment(torch, device), "per_fact": rows}
    if args.check:
        out["check"] = check(args, model, tok, facts[0], first, device)
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    print()


def check(args, model, tok, fact, flows, device):
    """causal-tracer's numbers vs ROME's algorithm (rome_reference.Tracer)."""
    import numpy as np
    from rome_reference import Tracer
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from rome_baseline import OnDevice
    tr = Tracer(OnDevice(model, device), tok, samples=args.samples, noise=args.noise, window=args.window)
    meds = {"hidden": "hidden", "mlp": "mlp", "attention": "attn"}
    ref = tr.trace(fact["prompt"], fact["subject"], [meds[k] for k in flows])
    res = {"high_score": abs(ref["high_score"] - next(iter(flows.values())).high_score),
           "low_score": abs(ref["low_score"] - next(iter(flows.values())).low_score)}
    for kind, f in flows.items():
        res[meds[kind]] = float(np.abs(np.array(ref["scores"][meds[kind]]) - f.scores.float().numpy()).max())
    print(f"  check vs rome_reference (max |diff|): {res}", file=sys.stderr, flush=True)
    return res


if __name__ == "__main__":
    main()
