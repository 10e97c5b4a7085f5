#!/usr/bin/env python3
"""ROME's averaging run on a knowtrace run's files, compared with its summary.

    knowtrace export --rome RUN_DIR            # writes RUN_DIR/rome/cases/
    python3 tests/reference/rome_averaging.py RUN_DIR [--rome-notebook PATH] [--tol 1e-9]

ROME's notebooks/average_causal_effects.ipynb averages causal traces with its
function read_knowlege(count, kind, arch): it reads
results/<arch>/causal_trace/cases/knowledge_<i><_kind>.npz for i < count,
skips the facts whose correct_prediction is false, and returns the
token-weighted mean score of six token categories ("result"), their
population std ("result_std"), the mean low score and the number of facts
("size"). Its figures draw result - low_score with bands
1.96 * result_std / sqrt(size).

With --rome-notebook PATH (a checkout of github.com/kmeng01/rome, the file
notebooks/average_causal_effects.ipynb), this script runs ROME's own Avg and
read_knowlege, taken from the notebook's cell as they are, on RUN_DIR's
exported cases (the notebook's folder layout is recreated in a temporary
directory). Without it, it runs the restatement of that computation below.
Either way it compares, for every mediator of RUN_DIR/summary.json with
scheme rome6 and token-weighted means:

    aie_rome   vs  result[i] - low_score
    ci95_rome  vs  1.96 * result_std[i] / sqrt(size)
    aie, ci95  vs  the same, when the summary shows ROME's formula and bands

and prints how far knowtrace's per-row variant (aie_rows) is from ROME's.
Exit status 1 on a mismatch. Needs numpy only.
"""
import argparse
import ast
import contextlib
import glob
import io
import json
import math
import os
import re
import sys
import tempfile

import numpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aie_reference import as_array, check_field  # noqa: E402

CATEGORIES = [
    "first_subject_token",
    "middle_subject_tokens",
    "last_subject_token",
    "first_subsequent_token",
    "further_tokens",
    "last_token",
]


def rome_reader_from_notebook(path):
    """ROME's Avg and read_knowlege, executed from the notebook's own cell."""
    with open(path) as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell.get("cell_type") == "code" and "def read_knowlege" in src:
            tree = ast.parse(src)
            keep = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
            namespace = {"numpy": numpy, "os": os}
            exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
            return namespace["read_knowlege"]
    raise SystemExit(f"{path}: no cell defines read_knowlege")


def restated_reader(cases_dir):
    """The same computation, written from its description (no ROME code)."""

    def read(count, kind=None, arch=None):
        suffix = f"_{kind}" if kind else ""
        rows = {c: [] for c in CATEGORIES}
        lows = []
        for i in range(count):
            path = os.path.join(cases_dir, f"knowledge_{i}{suffix}.npz")
            if not os.path.exists(path):
                continue
            d = numpy.load(path)
            if "correct_prediction" in d and not d["correct_prediction"]:
                continue
            s = d["scores"]
            b, e = (int(x) for x in d["subject_range"])
            t = len(s)
            lows.append(float(d["low_score"]))
            rows["first_subject_token"].append(s[b][None])
            rows["middle_subject_tokens"].append(s[b + 1 : e - 1])
            rows["last_subject_token"].append(s[e - 1][None])
            rows["first_subsequent_token"].append(s[e][None])
            rows["further_tokens"].append(s[e + 1 : t - 1])
            rows["last_token"].append(s[t - 1][None])
        stacked = [numpy.concatenate(rows[c]) for c in CATEGORIES]
        return dict(
            low_score=numpy.mean(lows),
            result=numpy.stack([x.mean(axis=0) for x in stacked]),
            result_std=numpy.stack([x.std(axis=0) for x in stacked]),
            size=len(lows),
        )

    return read


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--cases", help="ROME layout folder (default: RUN_DIR/rome/cases)")
    ap.add_argument("--rome-notebook", help="ROME's notebooks/average_causal_effects.ipynb")
    ap.add_argument("--tol", type=float, default=1e-9)
    args = ap.parse_args()
    cases = os.path.abspath(args.cases or os.path.join(args.run_dir, "rome", "cases"))
    if not os.path.isdir(cases):
        raise SystemExit(f"{cases}: no such folder (run `knowtrace export --rome {args.run_dir}` first)")
    with open(os.path.join(args.run_dir, "summary.json")) as f:
        summary = json.load(f)
    ids = [int(m.group(1)) for p in glob.glob(os.path.join(cases, "knowledge_*.npz"))
           if (m := re.match(r"knowledge_(\d+)", os.path.basename(p)))]
    if not ids:
        raise SystemExit(f"{cases}: no knowledge_<id>.npz files with integer ids")
    count = max(ids) + 1

    workdir = tempfile.mkdtemp(prefix="rome_avg_")
    os.makedirs(os.path.join(workdir, "results", "knowtrace", "causal_trace"))
    os.symlink(cases, os.path.join(workdir, "results", "knowtrace", "causal_trace", "cases"))
    if args.rome_notebook:
        reader, who = rome_reader_from_notebook(args.rome_notebook), "ROME's read_knowlege (from the notebook)"
    else:
        reader, who = restated_reader(cases), "restated read_knowlege (no notebook given)"

    failures, checked = [], 0
    worst = 0.0
    for m in summary["mediators"]:
        if m["scheme"] != "rome6" or m["mean_mode"] != "token":
            continue
        kind = None if m["mediator"] == "hidden" else m["mediator"]
        cwd = os.getcwd()
        os.chdir(workdir)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                d = reader(count, kind, "knowtrace")
        finally:
            os.chdir(cwd)
        if d["size"] != m["n_facts"]:
            failures.append(f'{m["mediator"]}: ROME averages {d["size"]} facts, summary {m["n_facts"]}')
        aie = d["result"] - d["low_score"]
        band = 1.96 * d["result_std"] / math.sqrt(d["size"])
        per_row_gap = 0.0
        for i, name in enumerate(CATEGORIES):
            c = next(x for x in m["categories"] if x["name"] == name)
            pairs = [("aie_rome", aie[i]), ("ci95_rome", band[i])]
            if m.get("aie_formula", "rome") == "rome":
                pairs.append(("aie", aie[i]))
            if m.get("band", "rome") == "rome":
                pairs.append(("ci95", band[i]))
            for field, want in pairs:
                label = f'{m["mediator"]}/{name}/{field} vs ROME'
                worst = max(worst, check_field(failures, label, c[field], want, args.tol))
            if "aie_rows" in c:
                rows = as_array(c["aie_rows"])
                ok = ~numpy.isnan(rows) & ~numpy.isnan(aie[i])
                if ok.any():
                    per_row_gap = max(per_row_gap, float(numpy.max(numpy.abs(rows[ok] - aie[i][ok]))))
        checked += 1
        print(f'{m["mediator"]:<20} {d["size"]:>5} facts   max |aie_rows - ROME| = {per_row_gap:.4g}')
    print(f"{who}: {checked} mediators checked, max |summary - ROME| = {worst:.3g}")
    for f in failures:
        print("MISMATCH", f)
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
