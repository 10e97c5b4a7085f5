#!/usr/bin/env python3
"""Llama 3's own tokenizer as a Hugging Face tokenizer.json, from PyPI only.

  python3 bench/llama3_tokenizer.py --out DIR [--wheel llama_models-0.3.0-py3-none-any.whl]
                                    [--data known_1000.json] [--knowtrace build/knowtrace]

Meta's package `llama-models` (PyPI) ships the Llama 3 tokenizer as a
tiktoken rank file (llama_models/llama3/tokenizer.model, 128000 pieces) and
names its 256 special tokens in llama3/tokenizer.py. This script reads that
file out of the wheel (downloaded with `pip download` when --wheel is not
given), converts it with transformers' TikTokenConverter and lays it out as
the Llama-3 checkpoints on the hub do: the pieces 0..127999, the special
tokens 128000..128255, <|begin_of_text|> put in front of every prompt. It
writes DIR/tokenizer.json and DIR/tokenizer_config.json.

Then it checks the result against tiktoken itself with Meta's pattern and
ranks (the tokenizer Llama 3 was trained with) on every prompt of --data
(default: known_1000 through KNOWTRACE_DATA_DIR or ../shared/data): the ids
must be equal. When a knowtrace binary is there (--knowtrace, default
build/knowtrace) it checks knowtrace's own tokenizer on the same prompts too
(`knowtrace tokenize --model DIR --dataset ... --json`). It prints the mean
tokens per prompt, the figure the GPU runs report, as JSON.

Needs transformers, tokenizers and tiktoken (no torch).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL = "llama-models==0.3.0"
RANKS = "llama_models/llama3/tokenizer.model"
# Meta's pre-tokenizer pattern for Llama 3 (llama_models/llama3/tokenizer.py).
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# The named special tokens, in id order from 128000; the rest of the 256 are
# <|reserved_special_token_2|> ... <|reserved_special_token_247|>.
NAMED = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
         "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
         "<|eot_id|>", "<|python_tag|>", "<|image|>"]
N_SPECIAL = 256


def die(msg):
    print(f"llama3_tokenizer.py: {msg}", file=sys.stderr)
    sys.exit(2)


def special_tokens():
    return NAMED + [f"<|reserved_special_token_{2 + i}|>" for i in range(N_SPECIAL - len(NAMED))]


def rank_file(wheel, work):
    if not wheel:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", work]
        if subprocess.call(cmd) != 0:
            die(f"pip download {WHEEL} failed; pass --wheel")
        found = glob.glob(os.path.join(work, "llama_models-*.whl"))
        if not found:
            die(f"pip download {WHEEL} left no wheel in {work}")
        wheel = found[0]
    try:
        with zipfile.ZipFile(wheel) as z:
            z.extract(RANKS, work)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        die(f"{wheel}: no {RANKS} in it ({e})")
    return os.path.join(work, RANKS), os.path.basename(wheel)


def build(ranks_path):
    from tokenizers import AddedToken, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tok = TikTokenConverter(vocab_file=ranks_path, pattern=PATTERN).converted()
    base = tok.get_vocab_size()
    if base != 128000:
        die(f"{ranks_path}: {base} pieces, expected Llama 3's 128000")
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in special_tokens()])
    bos = "<|begin_of_text|>"
    if tok.token_to_id(bos) != 128000:
        die(f"{bos} got id {tok.token_to_id(bos)}, expected 128000")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, 128000)]),
    ])
    return tok


def reference(ranks_path):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(ranks_path)
    specials = {t: len(ranks) + i for i, t in enumerate(special_tokens())}
    return tiktoken.Encoding(name="llama3", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=specials)


def load_prompts(path):
    if not path:
        for d in (os.environ.get("KNOWTRACE_DATA_DIR"), os.path.join(ROOT, "..", "shared", "data")):
            if d and os.path.isfile(os.path.join(d, "known_1000.json")):
                path = os.path.join(d, "known_1000.json")
                break
    if not path:
        die("known_1000.json not found: pass --data or set KNOWTRACE_DATA_DIR")
    try:
        with open(path) as f:
            facts = json.load(f)
        return [f["prompt"] for f in facts], path
    except (OSError, ValueError, KeyError, TypeError) as e:
        die(f"{path}: not a fact list with 'prompt' fields ({e})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for tokenizer.json and tokenizer_config.json")
    p.add_argument("--wheel", help=f"a {WHEEL} wheel (default: pip download it)")
    p.add_argument("--data", help="facts whose prompts are checked and counted (default known_1000)")
    p.add_argument("--knowtrace", default=os.path.join(ROOT, "build", "knowtrace"),
                   help="knowtrace binary whose tokenizer is checked too (skipped when it is not there)")
    args = p.parse_args()

    prompts, data_path = load_prompts(args.data)
    with tempfile.TemporaryDirectory() as work:
        ranks_path, wheel_name = rank_file(args.wheel, work)
        tok = build(ranks_path)
        ref = reference(ranks_path)
        os.makedirs(args.out, exist_ok=True)
        tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"backend": "tokenizers", "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                   "model_max_length": 131072, "tokenizer_class": "TokenizersBackend"}, f, indent=2)

    ours = [e.ids for e in tok.encode_batch(prompts)]
    theirs = [[128000] + ref.encode(t, disallowed_special=()) for t in prompts]
    bad = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    if bad:
        i = bad[0]
        die(f"{len(bad)} of {len(prompts)} prompts differ from tiktoken's ids; first: {prompts[i]!r}: "
            f"{ours[i]} vs {theirs[i]}")
    summary = {"tokenizer": os.path.abspath(os.path.join(args.out, "tokenizer.json")), "source": wheel_name,
               "vocab_size": tok.get_vocab_size(), "prompts": len(prompts), "data": data_path,
               "equal_to_tiktoken": len(prompts),
               "mean_tokens_with_bos": sum(map(len, ours)) / len(ours),
               "max_tokens_with_bos": max(map(len, ours))}
    if os.path.isfile(args.knowtrace) and os.access(args.knowtrace, os.X_OK):
        cmd = [args.knowtrace, "tokenize", "--model", args.out, "--dataset", data_path, "--json"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            die(f"{' '.join(cmd)}: exit {run.returncode}: {run.stderr.strip()[-300:]}")
        kt_ids = json.loads(run.stdout)["input_ids"]
        bad = [i for i, (a, b) in enumerate(zip(kt_ids, theirs)) if a != b]
        if bad or len(kt_ids) != len(theirs):
            i = bad[0] if bad else 0
            die(f"knowtrace: {len(bad)} of {len(prompts)} prompts differ from tiktoken's ids; first: "
                f"{prompts[i]!r}: {kt_ids[i]} vs {theirs[i]}")
        summary["knowtrace_equal"] = len(prompts)
    json.dump(summary, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
