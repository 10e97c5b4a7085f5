#!/usr/bin/env python3
"""Times knowtrace's tokenizer of a GGUF sentencepiece vocabulary against the
two Python oracles (the ones tests/reference/make_gemma_tokenizer_goldens.py
uses) on every known_1000 prompt, in one run: `knowtrace tokenize --dataset`
(its own load and encode times, best of 3 processes), transformers'
GGUF-converted tokenizer (the `tokenizers` Rust backend) and the
`sentencepiece` library on a ModelProto built from the GGUF pieces. Loading
(GGUF -> tokenizer) is timed once for Python; each encoding is the best of 3.
One line per measurement on stdout, then the ratios.

  python3 bench/tokenize_speed.py models/gemma-3-270m-q4_k_m.gguf ../shared/data

Needs gguf, sentencepiece, protobuf, tokenizers, transformers (torch optional:
without it transformers' tokenizer is built through its convert_gguf_tokenizer).
The Rust backend's encode_batch uses every core (RAYON_NUM_THREADS limits it);
knowtrace encodes on one thread. KNOWTRACE_BIN names the binary (default
build/knowtrace).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import make_gemma_tokenizer_goldens as golden  # noqa: E402

REPEATS = 3


def best_of(fn, repeats=REPEATS):
    best, result = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, result


def knowtrace(path, prompts):
    """Best of REPEATS runs of `knowtrace tokenize --dataset`: (load s, encode s, ids)."""
    binary = os.environ.get("KNOWTRACE_BIN", os.path.join(ROOT, "build", "knowtrace"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump([{"prompt": p} for p in prompts], f)
    try:
        runs = [json.loads(subprocess.run([binary, "tokenize", "--model", path, "--dataset", f.name, "--json"],
                                          check=True, capture_output=True, text=True).stdout)
                for _ in range(REPEATS)]
    finally:
        os.unlink(f.name)
    return min(r["load_s"] for r in runs), min(r["encode_s"] for r in runs), runs[0]["input_ids"]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: tokenize_speed.py MODEL.gguf DATA_DIR")
    path, data_dir = sys.argv[1], sys.argv[2]
    with open(os.path.join(data_dir, "known_1000.json"), encoding="utf-8") as f:
        prompts = [r["prompt"] for r in json.load(f)]
    n = len(prompts)

    kt_load, kt_enc, kt_ids = knowtrace(path, prompts)
    print(f"knowtrace load {kt_load:.3f} s")
    print(f"knowtrace encode {n} prompts {kt_enc:.4f} s (one thread)")

    t0 = time.perf_counter()
    vocab = golden.GgufVocab(path)
    t_read = time.perf_counter() - t0
    print(f"gguf-py read vocab {t_read:.2f} s")

    t0 = time.perf_counter()
    hf, loader = golden.load_transformers(path, vocab)
    t_hf = time.perf_counter() - t0
    if loader != "AutoTokenizer":
        t_hf += t_read  # the fallback builds from the vocab read above
    print(f"tokenizers-gguf load {t_hf:.2f} s ({loader}, GGUF read included)")

    t0 = time.perf_counter()
    sp = golden.build_sentencepiece(vocab)
    t_sp = time.perf_counter() - t0
    print(f"sentencepiece load {t_read + t_sp:.2f} s (GGUF read {t_read:.2f} s + ModelProto {t_sp:.2f} s)")

    backend = hf.backend_tokenizer
    t_batch, batch = best_of(lambda: [e.ids for e in backend.encode_batch(prompts, add_special_tokens=True)])
    print(f"tokenizers-gguf encode_batch {n} prompts {t_batch:.4f} s")
    t_loop, loop = best_of(lambda: [backend.encode(p, add_special_tokens=True).ids for p in prompts])
    print(f"tokenizers-gguf encode {n} prompts {t_loop:.4f} s (per-prompt loop)")
    t, _ = best_of(lambda: [hf(p)["input_ids"] for p in prompts])
    print(f"transformers tokenizer(prompt) {n} prompts {t:.4f} s (per-prompt loop)")

    bos = [vocab.bos] if vocab.add_bos else []
    t_sp_batch, sp_batch = best_of(lambda: [bos + ids for ids in sp.encode(prompts)])
    print(f"sentencepiece encode {n} prompts {t_sp_batch:.4f} s (one list call)")
    t, sp_loop = best_of(lambda: [bos + sp.encode(p) for p in prompts])
    print(f"sentencepiece encode {n} prompts {t:.4f} s (per-prompt loop)")
    t, _ = best_of(lambda: [golden.split_specials(vocab, p) for p in prompts], repeats=1)
    print(f"llama.cpp rule special split (python) {n} prompts {t:.4f} s")

    same = sum(a == b for a, b in zip(batch, sp_batch))
    assert batch == loop and sp_batch == sp_loop
    print(f"agreement tokenizers-gguf vs sentencepiece {same}/{n} prompts")
    same = sum(a == b for a, b in zip(kt_ids, sp_batch))
    print(f"agreement knowtrace vs sentencepiece {same}/{n} prompts")
    print(f"ratio load: tokenizers-gguf / knowtrace {t_hf / kt_load:.0f}x, "
          f"sentencepiece / knowtrace {(t_read + t_sp) / kt_load:.0f}x")
    print(f"ratio encode: tokenizers-gguf loop / knowtrace {t_loop / kt_enc:.2f}x, "
          f"encode_batch / knowtrace {t_batch / kt_enc:.2f}x, sentencepiece list / knowtrace {t_sp_batch / kt_enc:.2f}x")


if __name__ == "__main__":
    main()
