#!/usr/bin/env python3
"""The cost of calling the engine from Python: `model.trace` vs the CLI's
own timing of the same trace (`knowtrace trace --json` "seconds": the trace
alone, without loading), measured side by side, alternating, in one run.

    PYTHONPATH=build/python python3 bench/python_overhead.py \
        [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--repeats 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import knowtrace as kt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT, SUBJECT = "The Eiffel Tower is located in the city of", "The Eiffel Tower"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "knowtrace"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engine", default="fast")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = kt.load(args.model)
    load_s = time.perf_counter() - t0
    py, cli = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tr = model.trace(PROMPT, SUBJECT, engine=args.engine)
        py.append(time.perf_counter() - t0)
        out = subprocess.run([args.bin, "trace", "--model", args.model, "--prompt", PROMPT, "--subject", SUBJECT,
                              "--engine", args.engine, "--json"], check=True, capture_output=True, text=True).stdout
        j = json.loads(out)
        cli.append(j["seconds"])
        same = all(tr[m]["scores"].tolist() == j["scores"][m] for m in kt.MEDIATORS)
    p, c = statistics.median(py), statistics.median(cli)
    print(f"model {os.path.basename(args.model)}, engine {args.engine}, {args.repeats} alternating repeats")
    print(f"load (Python)          {load_s:8.2f} s")
    print(f"model.trace (Python)   {p:8.2f} s  (median; includes the s3 noise level from the subjects)")
    print(f"knowtrace trace (CLI)  {c:8.2f} s  (median of its own 'seconds': the trace alone)")
    print(f"overhead               {p - c:+8.2f} s  ({100 * (p - c) / c:+.1f} %)")
    print(f"same scores as the CLI: {same}")


if __name__ == "__main__":
    main()
