#!/usr/bin/env python3
"""Markdown table of one benchmark run: knowtrace bench --json beside the
Python baselines' JSON, with knowtrace fast's speed-up over each.

  bench_table.py [--title TEXT] --section NAME --kt KT.json [--baseline LABEL=FILE.json ...] [--section ...]

Speed-ups are ratios of wall seconds over the same facts (the first M facts
that both timed), so runs that timed different numbers of facts still
compare like with like. A run whose JSON is missing or broken shows "n/a"
and the last line of FILE.err (its stderr) as the reason. causal-tracer
traces 3 of the 5 mediators: its row also gives the ratio per traced cell
(restoration), which corrects for that.
"""
import json
import os
import sys


def load(path):
    """(json, None) or (None, reason)."""
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        reason = None
        err = os.path.splitext(path)[0] + ".err"
        try:
            with open(err) as f:
                lines = [ln.strip() for ln in f if ln.strip() and "Loading weights" not in ln]
            reason = lines[-1] if lines else None
        except OSError:
            pass
        if reason is None:
            reason = "no output" if isinstance(e, OSError) else f"bad JSON ({e})"
        return None, reason


def fmt_s(x):
    return "n/a" if x is None else (f"{x:.3g}" if x < 100 else f"{x:.0f}")


def fmt_x(x):
    return "n/a" if x is None else f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def section(name, kt_path, baselines):
    out = [f"### {name}", ""]
    kt, why = load(kt_path)
    if kt is None:
        out += [f"knowtrace bench: n/a ({why})", ""]
    facts = kt["facts"] if kt else []
    fast = [f["fast"]["seconds"] for f in facts if "fast" in f]
    fast_cells = [f["cells"] for f in facts if "fast" in f]
    fast_tokens = [f["tokens"] for f in facts]
    ref = [f["reference"]["seconds"] for f in facts if "reference" in f]
    if kt:
        out.append(f"model `{kt['model']}` · {kt['device']} · {kt['dtype']} · S={kt['samples']} · W={kt['window']} · "
                   f"knowtrace threads {kt['threads']} · matmul peak fp32 {kt['peak_flops_fp32'] / 1e9:.0f} GFLOP/s, "
                   f"bf16 {kt['peak_flops_bf16'] / 1e9:.0f} GFLOP/s")
        out.append("")
    out += ["| run | facts timed | mediators | threads | s / fact | knowtrace fast is … faster (same facts) |",
            "|---|---|---|---|---|---|"]

    def over(r, m):
        return "n/a (no knowtrace fast time)" if r is None else f"{fmt_x(r)} (over {m} fact{'s' * (m != 1)})"

    def same_facts(per_fact):
        m = min(len(per_fact), len(fast))
        if m == 0 or sum(fast[:m]) <= 0:
            return None, 0
        return sum(per_fact[:m]) / sum(fast[:m]), m

    notes = []
    if fast:
        out.append(f"| knowtrace fast | {len(fast)} | 5 | {kt['threads']} | {fmt_s(sum(fast) / len(fast))} | — |")
    elif kt:
        out.append("| knowtrace fast | 0 | 5 | | n/a | |")
    if ref:
        r, m = same_facts(ref)
        out.append(f"| knowtrace reference | {len(ref)} | 5 | {kt['threads']} | {fmt_s(sum(ref) / len(ref))} | "
                   f"{over(r, m)} |")
    for label, path in baselines:
        b, why = load(path)
        if b is None:
            out.append(f"| {label} | | | | n/a | n/a: {why.replace('|', '/')} |")
            continue
        per = b["per_fact_seconds"]
        r, m = same_facts(per)
        meds = len(b.get("mediators", []))
        cell = ""
        if meds and meds != 5 and r is not None:
            # seconds per restoration cell, baseline over fast, same facts
            b_cells = sum(f["restorations"] for f in b["per_fact"][:m])
            k_cells = sum(fast_cells[:m])
            cell = f"; {fmt_x(r * k_cells / b_cells)} per traced cell" if b_cells and k_cells else ""
        out.append(f"| {label} | {len(per)} | {meds}{' of 5' if meds != 5 else ''} | {b.get('threads', '')} | "
                   f"{fmt_s(b['seconds_per_fact'])} | {over(r, m)}{cell} |")
        toks = [f.get("tokens") for f in b["per_fact"]]
        k = min(len(toks), len(fast_tokens))
        if toks[:k] != fast_tokens[:k]:
            notes.append(f"{label}: tokens per fact {toks[:k]} differ from knowtrace's {fast_tokens[:k]} "
                         "(tokenizers differ: see DESIGN.md's GGUF caveat)")
        if kt and (b.get("dtype") != kt["dtype"] or b.get("samples") != kt["samples"]):
            notes.append(f"{label}: settings differ from knowtrace's ({b.get('dtype')}, S={b.get('samples')})")
        if b.get("check"):
            notes.append(f"{label}: max |score - rome_reference| on fact 0: {b['check']}")
    if kt and fast and kt.get("total", {}).get("fast_flops"):
        t = kt["total"]
        peak = kt["peak_flops_fp32"] if kt["dtype"] == "float32" else kt["peak_flops_bf16"]
        rate = t["fast_flops"] / t["fast_seconds"]
        out += ["", f"knowtrace fast: {rate / 1e9:.1f} GFLOP/s useful = {100 * rate / peak:.0f}% of the measured "
                f"{kt['dtype']} matmul peak."]
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    return out + [""]


def main(argv):
    title, sections, cur = None, [], None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            return 0
        if i + 1 >= len(argv):
            sys.exit(f"bench_table.py: {a} needs a value")
        v = argv[i + 1]
        if a == "--title":
            title = v
        elif a == "--section":
            cur = {"name": v, "kt": None, "baselines": []}
            sections.append(cur)
        elif a == "--kt" and cur:
            cur["kt"] = v
        elif a == "--baseline" and cur and "=" in v:
            cur["baselines"].append(tuple(v.split("=", 1)))
        else:
            sys.exit(f"bench_table.py: unexpected {a} {v} (see --help)")
        i += 2
    lines = [f"## {title}", ""] if title else []
    for s in sections:
        lines += section(s["name"], s["kt"] or "", s["baselines"])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
