"""Seconds per fact against prompt length: knowtrace beside ROME on transformers, one run.

    python3 bench/by_length.py [--model PATH] [--lengths 5,10,15,20] [--mediators hidden,mlp,attn]
                               [--dtype float32] [--samples 10] [--window 10] [--noise 0.1]
                               [--threads N] [--skip-rome] [--out DIR]

For each length it takes the first fact of known_1000 whose prompt has that
many tokens under the model's own tokenizer (knowtrace's Python module, so
PYTHONPATH must reach build/python), then times on those facts, one after
the other and with the same settings: `knowtrace bench --engines fast`
(KNOWTRACE_BIN, default build/knowtrace) and bench/rome_baseline.py (ROME's
loop on transformers; PYTHON, default python3, must have torch and
transformers). It prints a Markdown table of seconds per fact, tokens,
knowtrace's FLOPs as a share of ROME's loop and the ratio, and writes each
run's JSON to DIR (default results/by-length-<time>/).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    print(f"by_length.py: {msg}", file=sys.stderr)
    sys.exit(2)


def pick_facts(model_path, facts, lengths):
    try:
        import knowtrace
    except ImportError as e:
        die(f"cannot import knowtrace ({e}); set PYTHONPATH=build/python")
    tok = knowtrace.load(model_path)
    chosen = {}
    for f in facts:
        n = len(tok.tokenize(f["prompt"])["ids"])
        if n in lengths and n not in chosen:
            chosen[n] = f
    missing = [n for n in lengths if n not in chosen]
    if missing:
        print(f"by_length.py: no fact of {missing} tokens; left out", file=sys.stderr)
    return [chosen[n] for n in lengths if n in chosen]


def run(cmd, out_path, env=None):
    print("--- " + " ".join(cmd)[:300], file=sys.stderr, flush=True)
    t0 = time.time()
    with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
        rc = subprocess.call(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
    if rc != 0:
        print(f"    failed (exit {rc}); see {out_path}.err", file=sys.stderr)
        return None
    print(f"    ok ({time.time() - t0:.0f} s)", file=sys.stderr)
    with open(out_path) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--data", default=None, help="known_1000.json (default $KNOWTRACE_DATA_DIR/known_1000.json)")
    p.add_argument("--lengths", default="5,10,15,20")
    p.add_argument("--mediators", default="hidden,mlp,attn")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--noise", default="0.1")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--skip-rome", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args()

    data = a.data or os.path.join(os.environ.get("KNOWTRACE_DATA_DIR", os.path.join(ROOT, "..", "shared", "data")),
                                  "known_1000.json")
    if not os.path.isfile(data):
        die(f"{data}: no such file (give --data or set KNOWTRACE_DATA_DIR)")
    lengths = [int(x) for x in a.lengths.split(",")]
    with open(data) as f:
        facts = pick_facts(a.model, json.load(f), lengths)
    if not facts:
        die("no facts of the lengths asked for")
    out_dir = a.out or os.path.join(ROOT, "results", time.strftime("by-length-%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    facts_file = os.path.join(out_dir, "facts.json")
    with open(facts_file, "w") as f:
        json.dump(facts, f, indent=1)

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    common = ["--model", a.model, "--data", facts_file, "--samples", str(a.samples), "--window", str(a.window),
              "--noise", a.noise, "--dtype", a.dtype]
    kt_bin = os.environ.get("KNOWTRACE_BIN", os.path.join(ROOT, "build", "knowtrace"))
    kt = run([kt_bin, "bench", *common, "--facts", str(len(facts)), "--engines", "fast", "--mediators", a.mediators,
              "--json"], os.path.join(out_dir, "knowtrace.json"), env)
    rome = None
    if not a.skip_rome:
        rome = run([os.environ.get("PYTHON", "python3"), "bench/rome_baseline.py", *common, "--facts", str(len(facts)),
                    "--mediators", a.mediators, "--threads", str(a.threads), "--no-warmup"],
                   os.path.join(out_dir, "rome.json"), env)

    print(f"\n{os.path.basename(a.model)}, {a.dtype}, {a.threads} threads, S = {a.samples}, window {a.window}, "
          f"noise {a.noise}, mediators {a.mediators}\n")
    print("| T | fact | knowtrace fast s | FLOPs vs ROME's loop | ROME on transformers s | ROME / knowtrace |")
    print("|---|---|---|---|---|---|")
    for i, f in enumerate(facts):
        k = kt["facts"][i] if kt else None
        r = rome["per_fact"][i] if rome else None
        ks = f"{k['fast']['seconds']:.1f}" if k else "n/a"
        share = f"{100 * k['fast']['fraction_of_rome_flops']:.1f} %" if k else "n/a"
        rs = f"{r['seconds']:.1f}" if r else "n/a"
        ratio = f"**{r['seconds'] / k['fast']['seconds']:.1f}×**" if k and r else "n/a"
        T = k["tokens"] if k else (r["tokens"] if r else "?")
        print(f"| {T} | {f['prompt']} | {ks} | {share} | {rs} | {ratio} |")
    if kt and rome:
        ks = sum(x["fast"]["seconds"] for x in kt["facts"])
        rs = sum(x["seconds"] for x in rome["per_fact"])
        print(f"| all | {len(facts)} facts | {ks:.1f} | | {rs:.1f} | **{rs / ks:.1f}×** |")


if __name__ == "__main__":
    main()
