"""knowtrace from Python: causal tracing (ROME) with knowtrace's C++ engine.

    import knowtrace as kt
    model = kt.load("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    model.predict("The Eiffel Tower is located in the city of")
    traces = model.trace("The Eiffel Tower is located in the city of", "The Eiffel Tower")
    traces["hidden"]["scores"]          # torch.Tensor [tokens, layers], as ROME's calculate_hidden_flow

    logits, seen = model.run(ids, record=["model.layers.3.mlp"],
                             patch={"model.layers.5.mlp": lambda value, layer: value * 0})

    kt.run("hparams/smollm2-135m.yaml", limit=2)   # the pipeline, as `knowtrace run`
    r = kt.open_run("results/smollm2-135m")        # stored facts, traces, averaged effects

Errors are knowtrace.Error subclasses that are also ValueError
(InvalidInput) or FileNotFoundError (NotFound), with the CLI's one-line
messages. A long trace or run releases the GIL; Ctrl-C interrupts it.
"""
import json
import os

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _core
from ._core import Error, InvalidInput, NotFound  # noqa: F401
from .runs import RunView, open_run  # noqa: F401,E402

__version__ = _core.version

# Debian's libtorch starts with one intra-op thread (PyPI's with every
# core): as the CLI does, use every core unless the user chose a count.
if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == 1 and (os.cpu_count() or 1) > 1:
    torch.set_num_threads(os.cpu_count())

MEDIATORS = ("hidden", "hidden_attn_severed", "hidden_mlp_severed", "mlp", "attn")


class Model:
    """A loaded model: a Hugging Face directory, a .gguf file, or a hub ID
    ("org/name[@revision]") found in the local Hugging Face cache."""

    def __init__(self, core):
        self._m = core

    @property
    def config(self):
        """architecture, layers, hidden, heads, kv_heads, vocab, context, path, dtype, device"""
        return self._m.config

    def tokenize(self, text, add_special=True):
        """{"ids": [...], "offsets": [(begin, end) byte ranges], "tokens": [each id decoded alone]}"""
        return self._m.tokenize(text, add_special)

    def decode(self, ids, skip_special=False):
        return self._m.decode([int(i) for i in ids], skip_special)

    def sites(self):
        """Every site's Hugging Face module name, in forward order."""
        return self._m.sites()

    def predict(self, prompt, top_k=5):
        """The top_k next tokens: [{"token", "id", "prob"}, ...]."""
        if top_k < 1:
            raise InvalidInput(f"top_k must be at least 1 (got {top_k})")
        logits, _ = self.run(prompt, last_only=True)
        probs = torch.softmax(logits[0].double(), -1)
        p, i = probs.topk(min(top_k, probs.numel()))
        return [{"token": self.decode([int(t)]), "id": int(t), "prob": float(q)} for q, t in zip(p, i)]

    def run(self, ids, record=(), patch=None, positions=None, last_only=False):
        """One forward pass with sites read and replaced by name.

        ids: a prompt (str), token ids ([T] or [B, T] list or tensor).
        record: site names whose values come back (detached copies).
        patch: {site name: tensor (set at `positions`, else everywhere) or
                callable(value, layer) -> tensor of the same shape}.
        Returns (logits [B, T, vocab] or [B, vocab] with last_only, {name: value})."""
        if isinstance(ids, str):
            ids = self.tokenize(ids)["ids"]
        ids = torch.as_tensor(ids, dtype=torch.long)
        return self._m.run(ids, list(record), dict(patch or {}), None if positions is None else list(positions),
                           last_only)

    def trace(self, prompt, subject, mediators=MEDIATORS, samples=10, noise="s3", seed=1, replace=False, window=10,
              convention="resid_post", severing="same-draw", expect=None, noise_subjects=None, engine="fast",
              max_batch_tokens="auto", corruption="noise", counterfactual=None, target="first-token", metric="prob",
              counterfactual_answer=None, normalise=False, knockout_window=9):
        """Causal trace of one fact: {mediator: dict with exactly the keys and
        types of ROME's calculate_hidden_flow}, plus "_meta" (answer id,
        noise level and where it came from, fingerprint, metric, target).
        noise "s3" is 3 x the std of every subject of known_1000 (when found,
        else the bundled facts; noise_subjects: a data set file), as
        `knowtrace run`. Beyond ROME: corruption="prompt" with a
        counterfactual prompt of as many tokens; target="answer" scores every
        token of " " + expect (teacher-forced); metric "logprob",
        "logit_diff" (needs counterfactual_answer) or "kl"; normalise=True
        gives (m - low) / (high - low); mediators "knockout_subject",
        "knockout_nonsubject", "knockout_last" remove the last token's
        attention edges in knockout_window layers (Geva et al.)."""
        if isinstance(mediators, str):
            mediators = [m for m in mediators.replace(",", " ").split() if m]
        if noise_subjects is None:
            noise_subjects = _default_noise_subjects()
        return self._m.trace(prompt, subject, list(mediators), int(samples), str(noise), int(seed), bool(replace),
                             int(window), convention, severing, expect, noise_subjects or "", engine,
                             -1 if max_batch_tokens == "auto" else int(max_batch_tokens),
                             dict(corruption=corruption, counterfactual=counterfactual, target=target, metric=metric,
                                  counterfactual_answer=counterfactual_answer, normalise=bool(normalise),
                                  knockout_window=int(knockout_window)))

    def __repr__(self):
        c = self.config
        return f"<knowtrace.Model {c['architecture']} {c['layers']} layers, {c['dtype']} on {c['device']}: {c['path']}>"


def _default_noise_subjects():
    """known_1000 where the CLI finds it ("" lets the engine look), else the
    facts bundled with the package."""
    data = os.environ.get("KNOWTRACE_DATA_DIR")
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "knowtrace")
    for d in (data, cache):
        if d and os.path.exists(os.path.join(d, "known_1000.json")):
            return ""
    bundled = os.path.join(os.path.dirname(__file__), "data", "facts_default.json")
    return bundled if os.path.exists(bundled) else ""


def load(path, device="cpu", dtype="float32"):
    """Loads a model (see Model)."""
    return Model(_core.Model(os.fspath(path), device, dtype))


def run(config_path, **overrides):
    """`knowtrace run CONFIG` with any config key overridden by keyword
    (limit=2, mediators=["hidden"], results="out/"). Returns the run's
    report (dir, facts, kept, traced, reused, aggregated_facts, notes, ...)."""
    pairs = [(k, json.dumps(v)) for k, v in overrides.items()]
    return _core.run_config(os.fspath(config_path), pairs)
