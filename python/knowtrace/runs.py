"""Stored results of a run, read with numpy alone (no model): the filter's
verdicts, every trace (ROME's keys), and the averaged effects."""
import glob
import json
import os

import numpy


def _nan_array(values):
    return numpy.array([numpy.nan if v is None else v for v in values], dtype=numpy.float64)


class RunView:
    def __init__(self, run_dir):
        self.dir = os.fspath(run_dir)
        path = os.path.join(self.dir, "run.json")
        if not os.path.exists(path):
            from . import NotFound
            raise NotFound(f"{self.dir}: no run.json: not a knowtrace results directory")
        with open(path) as f:
            self.run = json.load(f)
        self.config = self.run["config"]
        self.facts = []
        fpath = os.path.join(self.dir, "filter.jsonl")
        if os.path.exists(fpath):
            with open(fpath) as f:
                self.facts = [json.loads(line) for line in f if line.strip()]
        spath = os.path.join(self.dir, "summary.json")
        self._summary = json.load(open(spath))["mediators"] if os.path.exists(spath) else []

    def kept(self):
        """The verdicts of the facts the run's filter rule keeps."""
        rule = self.config.get("filter", "rome")
        if rule == "none":
            return list(self.facts)
        key = "rome" if rule == "rome" else "first_token"
        return [v for v in self.facts if v[key]]

    def trace(self, fact_id, mediator="hidden"):
        """One stored trace as a dict of numpy values (ROME's keys and knowtrace's)."""
        path = os.path.join(self.dir, "traces", f"{fact_id}_{mediator}.npz")
        with numpy.load(path) as d:
            out = {k: d[k] for k in d.files}
        for k, v in list(out.items()):
            if v.shape == () and v.dtype.kind in "U":
                out[k] = str(v)
            elif v.shape == () and v.dtype.kind in "fib":
                out[k] = v.item()
        out["subject_range"] = tuple(int(x) for x in out["subject_range"])
        out["input_tokens"] = [str(t) for t in out["input_tokens"]]
        return out

    def traces(self, mediator="hidden"):
        """{fact id: trace} for every stored trace of a mediator."""
        out = {}
        suffix = f"_{mediator}.npz"
        for p in sorted(glob.glob(os.path.join(self.dir, "traces", "*" + suffix))):
            fact = os.path.basename(p)[: -len(suffix)]
            out[fact] = self.trace(fact, mediator)
        return out

    def summary(self, mediator="hidden", scheme="rome6", mean_mode="token"):
        """One averaged summary: the summary.json entry with numpy arrays
        (aie, ci95, score and both formulas' fields per category)."""
        for m in self._summary:
            if m["mediator"] == mediator and m["scheme"] == scheme and m["mean_mode"] == mean_mode:
                s = dict(m)
                s["categories"] = {
                    c["name"]: {k: (_nan_array(v) if isinstance(v, list) else v) for k, v in c.items()}
                    for c in m["categories"]
                }
                return s
        raise KeyError(f"{self.dir}: no summary for {mediator}/{scheme}/{mean_mode}")

    def aie(self, mediator="hidden", scheme="rome6", mean_mode="token"):
        """(category names, array [categories, layers]) of the shown AIE."""
        s = self.summary(mediator, scheme, mean_mode)
        names = list(s["categories"])
        return names, numpy.stack([s["categories"][n]["aie"] for n in names])

    def records(self):
        """Long format for pandas.DataFrame: one dict per mediator, scheme,
        mean mode, category and layer."""
        rows = []
        for m in self._summary:
            for c in m["categories"]:
                for layer in range(len(c["aie"])):
                    row = {"mediator": m["mediator"], "scheme": m["scheme"], "mean_mode": m["mean_mode"],
                           "aie_formula": m.get("aie_formula", "rome"), "category": c["name"], "layer": layer,
                           "n": c["n"], "n_facts": c.get("n_facts")}
                    for k in ("score", "aie", "ci95", "aie_rome", "aie_rows", "ci95_rome", "ci95_rows"):
                        if k in c:
                            row[k] = numpy.nan if c[k][layer] is None else c[k][layer]
                    rows.append(row)
        return rows

    def __repr__(self):
        return f"<knowtrace.RunView {self.dir}: {len(self.facts)} verdicts, {len(self.kept())} kept>"


def open_run(run_dir):
    """The stored results of a run directory (see RunView)."""
    return RunView(run_dir)
