"""The Python package (knowtrace._core built by CMake, python/knowtrace):
the same numbers as the CLI, patches as transformers' hooks give them, ROME's
dict, and the CLI's errors as Python exceptions. Run by ctest (python.pytest)
with PYTHONPATH=<build>/python; needs Debian's python3-torch, python3-numpy,
python3-pytest."""
import inspect
import json
import os
import subprocess
import sys

import numpy
import pytest
import torch

import knowtrace as kt

SRC = os.environ.get("KT_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(os.environ.get("KT_BINARY_DIR", os.path.join(SRC, "build")), "knowtrace")
FIX = os.path.join(SRC, "tests", "fixtures", "models")
PROMPT, SUBJECT = "The Eiffel Tower is located in the city of", "The Eiffel Tower"
ARCHS = ["gpt2", "llama", "gemma3_text", "qwen3", "gpt_neox"]
# The module built beside this CLI shares its libtorch: bit for bit. A
# package installed elsewhere (pip, another torch) agrees to fp32 rounding.
SAME_BUILD = os.path.realpath(os.path.dirname(kt._core.__file__)) == os.path.realpath(
    os.path.join(os.path.dirname(BIN), "python", "knowtrace"))


@pytest.fixture(scope="module")
def models():
    return {a: kt.load(os.path.join(FIX, a)) for a in ARCHS}


def test_load_tokenize_decode_sites_predict(models):
    m = models["llama"]
    assert m.config["architecture"] == "llama" and m.config["layers"] == 3
    enc = m.tokenize(PROMPT)
    assert len(enc["ids"]) == len(enc["offsets"]) == len(enc["tokens"])
    # Byte offsets cover the prompt's text.
    assert all(0 <= b <= e <= len(PROMPT.encode()) for b, e in enc["offsets"])
    assert m.decode(enc["ids"], skip_special=True).strip() == PROMPT
    sites = m.sites()
    assert sites[0] == "model.embed_tokens" and "model.layers.2.mlp" in sites
    top = m.predict(PROMPT, top_k=3)
    assert len(top) == 3 and top[0]["prob"] >= top[1]["prob"] >= top[2]["prob"] > 0
    logits, _ = m.run(PROMPT, last_only=True)
    assert int(logits[0].argmax()) == top[0]["id"]
    assert isinstance(logits, torch.Tensor) and logits.dtype == torch.float32


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_trace_equals_the_cli_bit_for_bit(models, tmp_path, arch, engine):
    m = models[arch]
    got = m.trace(PROMPT, SUBJECT, samples=2, noise="0.3", window=2, engine=engine)
    subprocess.run([BIN, "trace", "--model", os.path.join(FIX, arch), "--prompt", PROMPT, "--subject", SUBJECT,
                    "--samples", "2", "--noise", "0.3", "--window", "2", "--engine", engine, "--out", str(tmp_path),
                    "--formats", ""], check=True, capture_output=True)
    for med in kt.MEDIATORS:
        with numpy.load(tmp_path / f"fact_{med}.npz") as d:
            r = got[med]
            if SAME_BUILD:
                assert numpy.array_equal(r["scores"].numpy(), d["scores"]), med
                assert r["low_score"] == float(d["low_score"])
                assert float(r["high_score"]) == float(d["high_score"])
            else:
                assert numpy.allclose(r["scores"].numpy(), d["scores"], atol=1e-6, rtol=0), med
                assert abs(r["low_score"] - float(d["low_score"])) < 1e-6
            assert r["input_ids"].tolist() == d["input_ids"].tolist()
            assert r["input_tokens"] == [str(t) for t in d["input_tokens"]]
            assert r["subject_range"] == tuple(int(x) for x in d["subject_range"])
            assert r["answer"] == str(d["answer"]) and r["kind"] == str(d["kind"])
            assert r["window"] == int(d["window"])
            if SAME_BUILD:
                assert got["_meta"]["fingerprint"] == str(d["fingerprint"])


# The keys and types ROME's calculate_hidden_flow returns; plot_trace_heatmap
# (experiments/causal_trace.py) reads scores, low_score, answer, kind,
# window, input_tokens and subject_range from it.
ROME_TYPES = {"scores": torch.Tensor, "low_score": float, "high_score": torch.Tensor, "input_ids": torch.Tensor,
              "input_tokens": list, "subject_range": tuple, "answer": str, "window": int,
              "correct_prediction": bool, "kind": str}


def test_trace_returns_romes_dict(models):
    t = models["gpt2"].trace(PROMPT, SUBJECT, samples=2, noise="0.3", window=2, expect="Paris")
    for med in kt.MEDIATORS:
        assert set(t[med]) == set(ROME_TYPES), med
        for k, ty in ROME_TYPES.items():
            assert isinstance(t[med][k], ty), (med, k, type(t[med][k]))
        assert t[med]["scores"].shape == (len(t[med]["input_tokens"]), 3)
    assert t["hidden"]["kind"] == "" and t["mlp"]["kind"] == "mlp" and t["mlp"]["window"] == 2
    assert t["hidden"]["window"] == 1
    assert t["_meta"]["correct_rule"] == "rome"
    # Comma lists as in the CLI.
    assert set(models["gpt2"].trace(PROMPT, SUBJECT, mediators="hidden,mlp", samples=1, noise="0.1")) == {
        "hidden", "mlp", "_meta"}


def test_plot_trace_heatmap_takes_the_dict(models, tmp_path):
    """ROME's own plot_trace_heatmap, taken as it is from a checkout of
    github.com/kmeng01/rome (ROME_DIR) and run with matplotlib, draws the
    dict. In CI (no ROME, maybe no matplotlib) the keys and types above are
    what is checked."""
    rome = os.environ.get("ROME_DIR")
    if not rome:
        pytest.skip("ROME_DIR not set (a checkout of github.com/kmeng01/rome)")
    pytest.importorskip("matplotlib")
    import ast
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    path = os.path.join(rome, "experiments", "causal_trace.py")
    tree = ast.parse(open(path).read())
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "plot_trace_heatmap"]
    ns = {"plt": plt, "numpy": numpy, "os": os, "torch": torch}
    exec(compile(ast.Module(body=fn, type_ignores=[]), path, "exec"), ns)
    assert "result" in inspect.signature(ns["plot_trace_heatmap"]).parameters
    t = models["gpt2"].trace(PROMPT, SUBJECT, samples=2, noise="0.3", window=2)
    for med in ("hidden", "mlp", "attn"):
        out = tmp_path / f"{med}.pdf"
        ns["plot_trace_heatmap"](t[med], savepdf=str(out))
        assert out.stat().st_size > 1000


def test_run_patch_with_a_recorded_site_reproduces_the_other_run(models):
    m = models["llama"]
    a = m.tokenize("The Eiffel Tower is located in the city of")["ids"]
    b = m.tokenize("The Colosseum is located in the city of")["ids"][: len(a)]
    b += a[len(b):]
    assert len(a) == len(b) and a != b
    la, rec = m.run(a, record=["model.layers.1"])
    lb, _ = m.run(b, patch={"model.layers.1": rec["model.layers.1"]})
    assert torch.allclose(la, lb, atol=1e-5, rtol=0)
    # At chosen positions only: other positions keep b's own value.
    _, rb = m.run(b, record=["model.layers.1"])
    _, part = m.run(b, record=["model.layers.1"], patch={"model.layers.1": rec["model.layers.1"][:, [2]]},
                    positions=[2])
    assert torch.equal(part["model.layers.1"][:, 2], rec["model.layers.1"][:, 2])
    assert torch.equal(part["model.layers.1"][:, 3], rb["model.layers.1"][:, 3])


@pytest.mark.parametrize("arch", ARCHS)
def test_callable_patch_equals_transformers_hooks(models, arch):
    g = json.load(open(os.path.join(SRC, "tests", "fixtures", "python", "patch_goldens.json")))["models"][arch]
    m = models[arch]
    layers_seen = []

    def scale(value, layer):
        layers_seen.append(layer)
        return value * 0.5 + 0.25

    logits, _ = m.run(g["ids"], patch={g["mlp_site"]: scale}, last_only=True)
    assert layers_seen == [1]
    assert torch.allclose(logits[0], torch.tensor(g["mlp_scaled_logits"]), atol=1e-4, rtol=0)

    def zero2(value, layer):
        value = value.clone()
        value[:, 2] = 0
        return value

    logits, _ = m.run(g["ids"], patch={g["layer_site"]: zero2}, last_only=True)
    assert torch.allclose(logits[0], torch.tensor(g["layer0_pos2_zeroed_logits"]), atol=1e-4, rtol=0)


def test_errors_are_python_exceptions_with_the_clis_messages(models, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        kt.load(str(tmp_path / "missing"))
    assert isinstance(e.value, kt.Error) and isinstance(e.value, kt.NotFound)
    assert str(e.value) == str(tmp_path / "missing") + ": no such file or directory"
    m = models["gpt2"]
    with pytest.raises(ValueError) as e:
        m.trace(PROMPT, "Louvre", samples=1, noise="0.1")
    assert isinstance(e.value, kt.InvalidInput)
    assert "subject 'Louvre' does not occur in prompt" in str(e.value)
    # The same message as the CLI prints.
    r = subprocess.run([BIN, "trace", "--model", os.path.join(FIX, "gpt2"), "--prompt", PROMPT, "--subject", "Louvre",
                        "--samples", "1", "--noise", "0.1"], capture_output=True, text=True)
    assert r.stderr.strip() == "knowtrace: error: " + str(e.value)
    with pytest.raises(kt.InvalidInput, match="noise 'loud': expected"):
        m.trace(PROMPT, SUBJECT, noise="loud")
    with pytest.raises(kt.InvalidInput, match="unknown site 'transformer.h.9.mlp'"):
        m.run(PROMPT, record=["transformer.h.9.mlp"])
    with pytest.raises(kt.InvalidInput, match="the patch of 'transformer.h.0.mlp' has shape"):
        m.run(PROMPT, patch={"transformer.h.0.mlp": lambda v, layer: v[:, :1]})
    with pytest.raises(kt.InvalidInput, match="dtype 'int8' is not one of"):
        kt.load(os.path.join(FIX, "gpt2"), dtype="int8")
    with pytest.raises(kt.InvalidInput, match="keyword argument samples: key 'samples': 0 is out of range"):
        kt.run(os.path.join(SRC, "tests", "fixtures", "pipeline", "gpt2-tiny.yaml"), samples=0)
    with pytest.raises(kt.InvalidInput, match="unknown key 'sample' \\(did you mean 'samples'"):
        kt.run(os.path.join(SRC, "tests", "fixtures", "pipeline", "gpt2-tiny.yaml"), sample=3)
    with pytest.raises(kt.NotFound):
        kt.open_run(tmp_path)


def test_pipeline_and_open_run(tmp_path):
    rep = kt.run(os.path.join(SRC, "tests", "fixtures", "pipeline", "gpt2-tiny.yaml"), results=str(tmp_path / "run"),
                 mediators=["hidden", "mlp"], formats=["png"])
    assert rep["kept"] == 3 and rep["traced"] == 3 and rep["aggregated_facts"] == 3
    r = kt.open_run(tmp_path / "run")
    assert len(r.facts) == 5 and [v["id"] for v in r.kept()] == ["0", "1", "2"]  # 6 is too long: no verdict
    t = r.trace("0", "mlp")
    assert t["kind"] == "mlp" and t["scores"].shape[1] == 3 and t["correct_prediction"] is True
    assert set(r.traces("hidden")) == {"0", "1", "2"}
    names, aie = r.aie("hidden")
    assert names[2] == "last_subject_token" and aie.shape == (6, 3)
    s = r.summary("hidden")
    assert s["aie_formula"] == "rome"
    numpy.testing.assert_array_equal(s["categories"]["last_token"]["aie"], aie[5])
    rows = r.records()
    assert rows and {"mediator", "category", "layer", "aie", "ci95"} <= set(rows[0])


def test_example_runs_when_matplotlib_is_there(tmp_path):
    pytest.importorskip("matplotlib")
    model = os.environ.get("KT_EXAMPLE_MODEL", os.path.join(FIX, "gpt2"))
    r = subprocess.run([sys.executable, os.path.join(SRC, "examples", "trace_a_fact.py"), "--model", model, "--out",
                        str(tmp_path / "eiffel.png"), "--samples", "2"],
                       capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "eiffel.png").stat().st_size > 1000


def test_beyond_rome_keywords_match_the_transformers_goldens(models):
    """corruption / target / metric / knockouts by keyword give the numbers
    of tests/reference/interventions_reference.py (plain transformers hooks)."""
    with open(os.path.join(SRC, "tests", "fixtures", "traces", "llama_interventions.json")) as f:
        g = json.load(f)
    fact = g["facts"][0]
    common = dict(samples=g["samples"], noise=repr(g["noise_level"]), window=g["window"], expect=fact["attribute"],
                  counterfactual=fact["counterfactual_prompt"], counterfactual_answer=fact["counterfactual_answer"],
                  knockout_window=g["knockout_window"])
    m = kt.load(os.path.join(FIX, "llama"))
    for key, kw in (("noise_first_token", dict(metric="logit_diff")), ("noise_answer", dict(target="answer", metric="logprob")),
                    ("prompt_first_token", dict(corruption="prompt", metric="kl"))):
        t = m.trace(PROMPT, SUBJECT, mediators="hidden,mlp", **common, **kw)
        metric = kw["metric"]
        assert t["_meta"]["metric"] == metric and t["_meta"]["corruption"] == kw.get("corruption", "noise")
        assert abs(t["hidden"]["low_score"] - g["facts"][0][key]["low"][metric]) < 1e-5
        for med in ("hidden", "mlp"):
            want = numpy.array(fact[key]["scores"][med][metric])
            assert numpy.abs(t[med]["scores"].numpy() - want).max() < 1e-5, (key, med)
    k = m.trace(PROMPT, SUBJECT, mediators="knockout_subject,knockout_last", **common)
    for med in ("knockout_subject", "knockout_last"):
        want = numpy.array(fact["knockout_first_token"]["scores"][med])
        assert k[med]["scores"].shape == (1, len(want))
        assert numpy.abs(k[med]["scores"].numpy()[0] - want).max() < 1e-5
    with pytest.raises(kt.InvalidInput, match="tokens; the prompt has"):
        m.trace(PROMPT, SUBJECT, mediators="hidden", corruption="prompt", counterfactual="Paris is a city")
    with pytest.raises(kt.InvalidInput, match="metric 'accuracy' is not one of"):
        m.trace(PROMPT, SUBJECT, mediators="hidden", metric="accuracy")
