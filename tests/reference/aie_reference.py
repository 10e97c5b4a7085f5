#!/usr/bin/env python3
"""Recompute a knowtrace run's AIE summary from its stored traces with numpy
and compare it with the run's summary.json.

    python3 tests/reference/aie_reference.py RUN_DIR [--tol 1e-9]

Reads every RUN_DIR/traces/*.npz (keys scores, low_score, high_score,
subject_range, correct_prediction, mediator or kind), leaves out the facts
whose correct_prediction is false (as ROME's notebook), and for each entry of
RUN_DIR/summary.json (mediator x scheme x mean mode) recomputes from the
category definitions of DESIGN.md section 3:

  - score      mean p(answer) over the category's samples
  - aie_rome   score - mean low_score over facts (ROME's notebook formula)
  - aie_rows   mean over samples of (score - low_score of the sample's fact)
  - std_rome   population std (ddof=0) of the samples' scores
  - ci95_rome  1.96 * std_rome / sqrt(facts)
  - stddev     sample std (ddof=1) of the per-row effects, 0 for one sample
  - ci95_rows  1.96 * stddev / sqrt(n)
  - aie, ci95  the summary's aie_formula / band choice of the above

Samples are token rows (mean_mode "token", as ROME) or per-fact means over a
category's rows ("per_fact"). Every trace file in traces/ is used, so run it
on a directory whose traces are all kept facts. Exit status 1 on a mismatch.
Needs numpy only. (tests/reference/rome_averaging.py runs ROME's own
notebook code on the same run instead.)
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np


def category_rows(scheme, b, e, t):
    """Row ranges [lo, hi) of each category, in knowtrace's category order."""
    if scheme == "rome6":
        return [
            ("first_subject_token", b, b + 1),
            ("middle_subject_tokens", b + 1, e - 1),
            ("last_subject_token", e - 1, e),
            ("first_subsequent_token", e, min(e + 1, t)),
            ("further_tokens", e + 1, t - 1),
            ("last_token", t - 1, t),
        ]
    if scheme == "seed4":
        return [
            ("first_subject_token", b, b + 1),
            ("last_subject_token", e - 1, e),
            ("further_tokens", e, t - 1),
            ("last_token", t - 1, t),
        ]
    raise ValueError(f"unknown scheme {scheme}")


def load_traces(run_dir):
    by_mediator = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "traces", "*.npz"))):
        d = np.load(path, allow_pickle=False)
        if "mediator" in d:
            mediator = str(d["mediator"])
        else:
            kind = str(d["kind"]) if "kind" in d else "None"
            mediator = "hidden" if kind in ("", "None") else kind
        rec = dict(
            scores=np.asarray(d["scores"], dtype=np.float64),
            low=float(d["low_score"]),
            high=float(d["high_score"]),
            b=int(d["subject_range"][0]),
            e=int(d["subject_range"][1]),
            correct=bool(d["correct_prediction"]),
        )
        by_mediator.setdefault(mediator, []).append(rec)
    return by_mediator


def recompute(all_records, scheme, per_fact, formula, band):
    records = [r for r in all_records if r["correct"]]
    nf = len(records)
    mean_low = float(np.mean([r["low"] for r in records])) if records else np.nan
    out = dict(
        n_facts=nf,
        n_skipped=len(all_records) - nf,
        mean_low=mean_low,
        mean_high=float(np.mean([r["high"] for r in records])) if records else np.nan,
        ate=float(np.mean([r["high"] - r["low"] for r in records])) if records else np.nan,
        categories={},
    )
    names = [c[0] for c in category_rows(scheme, 0, 1, 2)]
    samples = {n: ([], []) for n in names}  # scores, effects
    for r in records:
        t = r["scores"].shape[0]
        for name, lo, hi in category_rows(scheme, r["b"], r["e"], t):
            if hi <= lo:
                continue
            rows = r["scores"][lo:hi]
            if per_fact:
                rows = rows.mean(axis=0, keepdims=True)
            samples[name][0].extend(rows)
            samples[name][1].extend(rows - r["low"])
    n_layers = all_records[0]["scores"].shape[1]
    fields = ("score", "aie", "ci95", "aie_rome", "aie_rows", "std_rome", "ci95_rome", "stddev", "ci95_rows")
    for name in names:
        sc, ef = np.array(samples[name][0]), np.array(samples[name][1])
        n = len(sc)
        if n == 0:
            c = {f: np.full(n_layers, np.nan) for f in fields}
            c["n"] = 0
            out["categories"][name] = c
            continue
        sd = ef.std(axis=0, ddof=1) if n > 1 else np.zeros(n_layers)
        c = dict(
            n=n,
            score=sc.mean(axis=0),
            aie_rome=sc.mean(axis=0) - mean_low,
            aie_rows=ef.mean(axis=0),
            std_rome=sc.std(axis=0),
            ci95_rome=1.96 * sc.std(axis=0) / math.sqrt(nf),
            stddev=sd,
            ci95_rows=1.96 * sd / math.sqrt(n) if n > 1 else np.zeros(n_layers),
        )
        c["aie"] = c["aie_rome"] if formula == "rome" else c["aie_rows"]
        c["ci95"] = c["ci95_rome"] if band == "rome" else c["ci95_rows"]
        out["categories"][name] = c
    return out


def as_array(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def field_difference(stored, want):
    """Largest |stored - want| over the finite values of a summary field
    (a JSON list with nulls); None when the NaN patterns differ."""
    got = as_array(stored)
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return None
    ok = ~np.isnan(want)
    return float(np.max(np.abs(got[ok] - want[ok]))) if ok.any() else 0.0


def check_field(failures, label, stored, want, tol):
    """Records a mismatch of one stored field; returns its difference."""
    d = field_difference(stored, want)
    if d is None:
        failures.append(f"{label}: NaN pattern differs")
        return 0.0
    if d > tol:
        failures.append(f"{label}: differs by {d:.3g}")
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--summary", help="default: RUN_DIR/summary.json")
    ap.add_argument("--tol", type=float, default=1e-9)
    args = ap.parse_args()
    summary = json.load(open(args.summary or os.path.join(args.run_dir, "summary.json")))
    traces = load_traces(args.run_dir)
    worst, failures = 0.0, []
    for m in summary["mediators"]:
        key = f'{m["mediator"]}/{m["scheme"]}/{m["mean_mode"]}'
        records = traces.get(m["mediator"], [])
        if not records:
            failures.append(f"{key}: no traces")
            continue
        ref = recompute(records, m["scheme"], m["mean_mode"] == "per_fact", m["aie_formula"], m["band"])
        if ref["n_facts"] != m["n_facts"] or ref["n_skipped"] != m["n_skipped"]:
            failures.append(f'{key}: n_facts/n_skipped {m["n_facts"]}/{m["n_skipped"]} vs {ref["n_facts"]}/{ref["n_skipped"]}')
        for field in ("mean_low", "mean_high", "ate"):
            if m[field] is None and np.isnan(ref[field]):
                continue
            d = abs(ref[field] - m[field])
            worst = max(worst, d)
            if d > args.tol:
                failures.append(f"{key}: {field} differs by {d:g}")
        for c in m["categories"]:
            rc = ref["categories"][c["name"]]
            if rc["n"] != c["n"]:
                failures.append(f'{key}/{c["name"]}: n {c["n"]} vs {rc["n"]}')
            for field in ("score", "aie", "ci95", "aie_rome", "aie_rows", "std_rome", "ci95_rome", "stddev", "ci95_rows"):
                worst = max(worst, check_field(failures, f'{key}/{c["name"]}/{field}', c[field], rc[field], args.tol))
        aie_ls = ref["categories"]["last_subject_token"]["aie"]
        if abs(np.nanmax(aie_ls) - m["best_last_subject_token"]["aie"]) > args.tol or int(
            np.nanargmax(aie_ls)
        ) != m["best_last_subject_token"]["layer"]:
            failures.append(f"{key}: best AIE at the last subject token differs")
    print(f"{len(summary['mediators'])} summaries checked, max abs difference {worst:.3g}")
    for f in failures:
        print("MISMATCH", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
