#!/usr/bin/env python3
"""Baseline (a): ROME's causal-tracing algorithm on Hugging Face transformers, timed.

Runs tests/reference/rome_reference.py's Tracer (imported, not copied): one
forward pass per restoration, a batch of S+1 rows (row 0 clean, rows 1..S
corrupted with numpy RandomState noise), all five mediators (hidden,
hidden_attn_severed, hidden_mlp_severed, mlp and attn with window W) over
every token x layer, on the first N facts of known_1000. Prints one JSON
object on stdout; progress goes to stderr.

  python3 bench/rome_baseline.py --facts 10 --samples 10 --dtype float32 --threads 2
  python3 bench/rome_baseline.py --model /tmp/llama-3.2-3b --device cuda --dtype bfloat16 --facts 1

Timing covers Tracer.trace() per fact (tokenising, the clean and corrupted
runs, every restoration); model loading and one untimed warm-up forward are
reported apart.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

sys.path.insert(0, os.path.join(common.ROOT, "tests", "reference"))


class OnDevice:
    """The model as the Tracer sees it, with input ids moved to the model's
    device (the Tracer builds them on the CPU). Everything else - config,
    named_modules, hooks - is the wrapped model's own."""

    def __init__(self, model, device):
        self._model, self._device = model, device

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, **kw):
        return self._model(**{k: v.to(self._device) for k, v in kw.items()})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    p.add_argument("--mediators", default=None,
                   help="comma-separated subset of the five mediators (default: all five)")
    args = p.parse_args()

    torch, dtype, device = common.setup_torch(args)
    try:
        from rome_reference import MEDIATORS, Tracer, find_token_range
    except ImportError as e:
        common.die(f"cannot import tests/reference/rome_reference.py: {e}")
    mediators = MEDIATORS if not args.mediators else common.choices(args.mediators, MEDIATORS, "mediator")
    data, facts = common.load_facts(args.data, args.facts)

    t0 = time.perf_counter()
    model, tok = common.load_model(args.model, dtype, device, args.attn)
    load_s = time.perf_counter() - t0
    L = model.config.num_hidden_layers
    tracer = Tracer(OnDevice(model, device), tok, samples=args.samples, noise=args.noise, window=args.window)
    print(f"rome_baseline: {args.model} ({L} layers) loaded in {load_s:.1f} s on {device}, {args.dtype}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr, flush=True)

    warm_s = 0.0
    if not args.no_warmup:
        t0 = time.perf_counter()
        ids = tok(facts[0]["prompt"])["input_ids"]
        b, e = find_token_range(tok, ids, facts[0]["subject"])
        tracer.run(ids, b, e)
        common.sync(torch, device)
        warm_s = time.perf_counter() - t0

    rows = []
    for i, k in enumerate(facts):
        common.sync(torch, device)
        t0 = time.perf_counter()
        res = tracer.trace(k["prompt"], k["subject"], mediators)
        common.sync(torch, device)
        s = time.perf_counter() - t0
        T = len(res["input_ids"])
        rows.append({"index": i, "prompt": k["prompt"], "tokens": T, "seconds": s,
                     "restorations": len(mediators) * T * L, "forwards": len(mediators) * T * L + 2,
                     "answer": res["answer"], "high_score": res["high_score"], "low_score": res["low_score"]})
        print(f"  fact {i}: {T} tokens, {s:.2f} s, answer {res['answer']!r}", file=sys.stderr, flush=True)

    total = sum(r["seconds"] for r in rows)
    out = {"baseline": "rome_on_transformers", "model": args.model, "data": data, "facts": len(rows),
           "seconds_per_fact": total / max(1, len(rows)), "seconds_total": total,
           "per_fact_seconds": [r["seconds"] for r in rows], "dtype": args.dtype, "device": str(device),
           "threads": torch.get_num_threads(), "samples": args.samples, "window": args.window, "noise": args.noise,
           "mediators": mediators, "attn_implementation": args.attn, "layers": L, "rows_per_forward": args.samples + 1,
           "load_seconds": load_s, "warmup_seconds": warm_s, "environment": common.environment(torch, device),
           "per_fact": rows}
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
