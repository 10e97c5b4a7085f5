#!/usr/bin/env python3
"""Golden encodings for the Gemma-3 sentencepiece vocabulary of a GGUF file
(tokenizer.ggml.model = "llama"), written to
tests/fixtures/gemma3/tokenizer_golden.json.

Two oracles:

  llama.cpp rule  What llama.cpp's SPM tokenizer gives with BOS and special
                  parsing on: the control, user-defined and unknown tokens are
                  cut out of the raw text first (longest token first, each at
                  every leftmost non-overlapping place), then each remaining
                  fragment has " " replaced by "\u2581", is split into
                  characters and merged pair by pair, always the adjacent pair
                  whose concatenation is the vocabulary piece with the highest
                  score (ties: the leftmost); a symbol left outside the
                  vocabulary becomes its bytes as <0xXX> pieces. The fragments
                  are encoded by the `sentencepiece` library (a BPE ModelProto
                  built from the GGUF pieces, scores and types, identity
                  normalizer, byte fallback), and checked against a direct
                  Python transcription of llama.cpp's merge loop
                  (llama_spm_fragment below) for every text.
  transformers    AutoTokenizer.from_pretrained(dir, gguf_file=name): the GGUF
                  vocabulary converted into a `tokenizers` BPE (merges rebuilt
                  from the vocabulary order, the space-run pieces respelled
                  "\u2581\u2581"...), which need not agree with the rule above.
                  transformers' GGUF reader imports torch; without torch the
                  same tokenizer is built through transformers' own
                  convert_gguf_tokenizer from metadata read with gguf-py
                  (checked to give the identical tokenizer.json and ids).

Written (compact JSON; known_1000 itself is never copied, only ids keyed by
known_id):
  meta:     vocab size, special ids, add_bos / add_space_prefix, token type
            counts, package versions, what the transformers conversion is
            (model type, normalizer, pre-tokenizer, decoder, post-processor,
            added-token counts)
  known:    {known_id: {p: prompt ids (llama.cpp rule, BOS), s: subject ids
            (no BOS)}} for all 1209 facts
  known_hf: {known_id: {p, s}} transformers' ids, only where they differ
  hand:     [{text, ids, hf_ids, decode_hf, decode_hf_skip, pieces_hf}] for the
            hand texts of make_tokenizer_fixtures.py plus GEMMA_HAND; ids by
            the llama.cpp rule, hf_ids = transformers with special tokens,
            decode_* = transformers' decode of `ids` with and without
            skip_special_tokens, pieces_hf = transformers' decode of each id
  random:   [{text, ids, hf_ids}] for make_tokenizer_fixtures.random_texts(250)

Run (deterministic; under a minute):
  KNOWTRACE_DATA_DIR=/path/to/data /tmp/venv/bin/python \\
      tests/reference/make_gemma_tokenizer_goldens.py models/gemma-3-270m-q4_k_m.gguf
Needs gguf, sentencepiece, protobuf, tokenizers, transformers (torch optional).
"""
import heapq
import importlib.metadata
import importlib.util
import json
import os
import sys

import gguf
import sentencepiece
from sentencepiece import SentencePieceProcessor
from sentencepiece import sentencepiece_model_pb2 as spm_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "gemma3", "tokenizer_golden.json")

sys.path.insert(0, HERE)
import make_tokenizer_fixtures as base  # noqa: E402  (HAND, random_texts)

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
TYPE_NAMES = {NORMAL: "normal", UNKNOWN: "unknown", CONTROL: "control",
              USER_DEFINED: "user_defined", UNUSED: "unused", BYTE: "byte"}

# Gemma-specific texts: chat turns, specials written in the text, the
# space/tab/newline run pieces, digits, byte fallback, literal "\u2581".
GEMMA_HAND = [
    "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>model\nThe capital is Paris.<end_of_turn><eos>",
    "<bos>The Eiffel Tower is located in",
    "text <bos> in the middle",
    "<<bos>>",
    "<eos>",
    "<pad><unk><mask>",
    "<unused5>",
    "a<unused0>b<unused6241>c",
    "<unused6242> is not a token",
    "<start_of_turn",
    "<start_of_image><end_of_image>",
    "[multimodal] image here",
    "<b>bold</b> and <i>italic</i> in <table><tr><td>x</td></tr></table>",
    "<h1>Title</h1>\n<blockquote>quote</blockquote>",
    "</s><s> tags",
    "a  b",
    "a   b    c",
    "x" + " " * 31 + "y",
    "x" + " " * 32 + "y",
    " " * 40 + "end",
    " " * 64,
    "a \u2581b",
    "   ",
    " leading space <start_of_turn>user",
    "tab\tsep\t\tdouble\t\t\t\tquad",
    "\t" * 35 + "x",
    "\n\n\n",
    "\n" * 33 + "x",
    "para one\n\npara two\n\n\npara three",
    " \n \n  \n",
    "\r\n\r\n",
    "0123456789",
    "In 1969, 3 astronauts flew 384,400 km.",
    "\u0663\u0664\u0665 and \u09e7\u09ef\u09ed\u09e7 and \u0967\u0968\u0969",
    "\u2581",
    "\u2581\u2581 literal lower blocks \u2581x",
    " \u2581 mixed \u2581\u2581 and spaces  \u2581",
    "\U0001f600\U0001f389\U0001f916",
    "\U00010348\U00010330\U0001033d Gothic",
    "\u16a0\u16a2\u16a6\u16a8\u16b1\u16b2 runes",
    "\U00013000\U00013001 hieroglyphs",
    "\ua997\ua9ae Javanese and \u1780\u17d2\u1798\u17c2\u179a Khmer",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u4e2d\u6587\u6587\u672c",
    "\x00\x01 control chars \x7f",
    "\u200b\u200d\ufeff zero widths",
    "\u01c4 \u01c5 \u01c6 \ufb01 \ufb02",
    "e\u0301 vs \u00e9",
    "<0x41> looks like a byte piece",
    "def f(x):\n    return x  # comment\n",
]


# --------------------------------------------------------------------------
# The GGUF vocabulary.

class GgufVocab:
    """Pieces, scores, types and the tokenizer flags of one GGUF file."""

    def __init__(self, path):
        self.fields = fields = gguf.GGUFReader(path).fields

        def array(key, decode):
            f = fields[key]
            return [decode(f.parts[i]) for i in f.data]

        def scalar(key, default=None):
            return fields[key].contents() if key in fields else default

        self.model = scalar("tokenizer.ggml.model")
        self.architecture = scalar("general.architecture")
        self.keys = sorted(k for k in fields if k.startswith("tokenizer."))
        self.pieces = array("tokenizer.ggml.tokens", lambda p: bytes(p).decode("utf-8"))
        self.scores = array("tokenizer.ggml.scores", lambda p: float(p[0]))
        self.types = array("tokenizer.ggml.token_type", lambda p: int(p[0]))
        self.bos = scalar("tokenizer.ggml.bos_token_id")
        self.eos = scalar("tokenizer.ggml.eos_token_id")
        self.unk = scalar("tokenizer.ggml.unknown_token_id")
        self.pad = scalar("tokenizer.ggml.padding_token_id")
        self.add_bos = scalar("tokenizer.ggml.add_bos_token", True)
        self.add_eos = scalar("tokenizer.ggml.add_eos_token", False)
        self.add_space_prefix = scalar("tokenizer.ggml.add_space_prefix", True)
        assert self.model == "llama", self.model
        assert len(self.pieces) == len(self.scores) == len(self.types)
        self.piece_to_id = {}
        for i, p in enumerate(self.pieces):
            self.piece_to_id[p] = i  # llama.cpp: the last one wins (none repeat here)
        # What llama.cpp cuts out of the text before the SPM merges
        # (cache_special_tokens): control, user-defined and unknown, longest first.
        self.specials = sorted((i for i, t in enumerate(self.types)
                                if t in (CONTROL, USER_DEFINED, UNKNOWN) and self.pieces[i]),
                               key=lambda i: -len(self.pieces[i].encode("utf-8")))
        self.byte_ids = [self.piece_to_id["<0x%02X>" % b] for b in range(256)]

    def type_counts(self):
        counts = {}
        for t in self.types:
            name = TYPE_NAMES.get(t, str(t))
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))


def build_sentencepiece(vocab):
    """A sentencepiece BPE model with the GGUF's pieces, scores and types."""
    kinds = spm_pb2.ModelProto.SentencePiece
    type_map = {NORMAL: kinds.NORMAL, UNKNOWN: kinds.UNKNOWN, CONTROL: kinds.CONTROL,
                USER_DEFINED: kinds.USER_DEFINED, UNUSED: kinds.UNUSED, BYTE: kinds.BYTE}
    proto = spm_pb2.ModelProto()
    for i, (piece, score, kind) in enumerate(zip(vocab.pieces, vocab.scores, vocab.types)):
        sp = proto.pieces.add()
        sp.piece = piece
        sp.score = score
        # sentencepiece needs exactly one UNKNOWN piece; the GGUF marks <unk> control.
        sp.type = kinds.UNKNOWN if i == vocab.unk else type_map[kind]
    spec = proto.trainer_spec
    spec.model_type = spm_pb2.TrainerSpec.BPE
    spec.vocab_size = len(vocab.pieces)
    spec.byte_fallback = True
    spec.unk_id, spec.bos_id, spec.eos_id = vocab.unk, vocab.bos, vocab.eos
    spec.pad_id = vocab.pad if vocab.pad is not None else -1
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = False
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return SentencePieceProcessor(model_proto=proto.SerializeToString())


# --------------------------------------------------------------------------
# The llama.cpp rule.

def split_specials(vocab, text):
    """llama.cpp's tokenizer_st_partition with parse_special: [(is_token, str
    or id)]. Each special, longest first, is cut out of every raw fragment at
    each leftmost non-overlapping occurrence."""
    parts = [(False, text)] if text else []
    for tid in vocab.specials:
        piece = vocab.pieces[tid]
        if not any(not is_tok and piece in s for is_tok, s in parts):
            continue
        out = []
        for is_tok, s in parts:
            if is_tok or piece not in s:
                out.append((is_tok, s))
                continue
            start = 0
            while True:
                at = s.find(piece, start)
                if at < 0:
                    break
                if at > start:
                    out.append((False, s[start:at]))
                out.append((True, tid))
                start = at + len(piece)
            if start < len(s):
                out.append((False, s[start:]))
        parts = out
    return parts


def llama_spm_fragment(vocab, text):
    """llama.cpp's llm_tokenizer_spm_session::tokenize on one raw fragment,
    transcribed: characters, then the best-scoring adjacent merge (any
    vocabulary piece counts), then ids or <0xXX> bytes."""
    syms = list(text.replace(" ", "\u2581"))
    nxt = list(range(1, len(syms))) + [-1]
    prv = list(range(-1, len(syms) - 1))
    agenda = []

    def add_bigram(left, right):
        if left < 0 or right < 0:
            return
        merged = syms[left] + syms[right]
        tid = vocab.piece_to_id.get(merged)
        if tid is not None:
            heapq.heappush(agenda, (-vocab.scores[tid], left, right, len(merged)))

    for i in range(1, len(syms)):
        add_bigram(i - 1, i)
    while agenda:
        _, left, right, size = heapq.heappop(agenda)
        if not syms[left] or not syms[right] or len(syms[left]) + len(syms[right]) != size:
            continue  # a stale pair: one side has been merged since
        syms[left] += syms[right]
        syms[right] = ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prv[nxt[right]] = left
        add_bigram(prv[left], left)
        add_bigram(left, nxt[left])
    ids = []
    i = 0 if syms else -1
    while i >= 0:
        tid = vocab.piece_to_id.get(syms[i])
        if tid is not None:
            ids.append(tid)
        else:
            ids.extend(vocab.byte_ids[b] for b in syms[i].encode("utf-8"))
        i = nxt[i]
    return ids


class LlamaCppRule:
    def __init__(self, vocab, sp):
        assert not vocab.add_space_prefix, "a space prefix is not modelled here"
        self.vocab, self.sp = vocab, sp

    def encode(self, text, add_special=True):
        """Ids by the llama.cpp rule (fragments through sentencepiece), checked
        against the transcribed merge loop."""
        ids, direct = [], []
        if add_special and self.vocab.add_bos:
            ids.append(self.vocab.bos)
            direct.append(self.vocab.bos)
        for is_tok, part in split_specials(self.vocab, text):
            if is_tok:
                ids.append(part)
                direct.append(part)
            else:
                ids.extend(self.sp.encode(part))
                direct.extend(llama_spm_fragment(self.vocab, part))
        if add_special and self.vocab.add_eos:
            ids.append(self.vocab.eos)
            direct.append(self.vocab.eos)
        assert ids == direct, (text, ids, direct)
        return ids

    def check_whole_text(self, text, ids, add_special=True):
        """For a text with no control token and no space run, sentencepiece on
        the whole text (it matches user-defined pieces itself) must give the
        same ids. Returns whether the check applied."""
        v = self.vocab
        if "  " in text or any(is_tok and v.types[p] == CONTROL
                               for is_tok, p in split_specials(v, text)):
            return False
        whole = ([v.bos] if add_special and v.add_bos else []) + self.sp.encode(text)
        assert whole == ids, (text, whole, ids)
        return True


# --------------------------------------------------------------------------
# transformers' conversion.

def load_transformers(path, vocab):
    """(tokenizer, how it was loaded)."""
    d, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    if importlib.util.find_spec("torch") is not None:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(d, gguf_file=name), "AutoTokenizer"
    # transformers' GGUF reader imports torch at module level, only for
    # tensors; the tokenizer conversion itself does not use it. Do what
    # get_gguf_tokenizer + GemmaTokenizer.from_pretrained do, with gguf-py.
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
    arrays = {"tokenizer.ggml.tokens": vocab.pieces, "tokenizer.ggml.scores": vocab.scores,
              "tokenizer.ggml.token_type": vocab.types}

    def value(key):
        if key in arrays:
            return arrays[key]
        return vocab.fields[key].contents() if key in vocab.fields else None

    tokenizer_dict, config = {}, {}
    for group, target in (("tokenizer", tokenizer_dict), ("tokenizer_config", config)):
        for key, renamed in GGUF_TOKENIZER_MAPPING[group].items():
            v = value("tokenizer." + key)
            if v is not None:
                target[renamed] = v
    if tokenizer_dict.get("tokenizer_type") == "llama":
        config.setdefault("add_bos_token", True)
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
        tid = value("tokenizer.ggml." + key)
        config[name] = tokenizer_dict["tokens"][tid] if tid is not None else None
    arch = value("general.architecture")
    backend, extra = convert_gguf_tokenizer(arch, tokenizer_dict)
    config.update(extra)
    cls = tokenizer_class_from_name({"gemma3": "GemmaTokenizer", "gemma2": "GemmaTokenizer",
                                     "gemma": "GemmaTokenizer"}[arch])
    return cls(tokenizer_object=backend, **config), "convert_gguf_tokenizer (no torch)"


def describe_transformers(tok):
    spec = json.loads(tok.backend_tokenizer.to_str())
    model = {k: v for k, v in spec["model"].items() if k not in ("vocab", "merges")}
    model["vocab_size"] = len(spec["model"].get("vocab", ()))
    model["merges"] = len(spec["model"].get("merges", ()))
    added = spec["added_tokens"]
    return {
        "model": model,
        "normalizer": spec.get("normalizer"),
        "pre_tokenizer": spec.get("pre_tokenizer"),
        "decoder": spec.get("decoder"),
        "post_processor": spec.get("post_processor"),
        "added_tokens": {"special": sum(1 for a in added if a["special"]),
                         "non_special": sum(1 for a in added if not a["special"])},
    }


# --------------------------------------------------------------------------

def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_gemma_tokenizer_goldens.py MODEL.gguf   "
                 "(KNOWTRACE_DATA_DIR: the folder holding known_1000.json)")
    path = sys.argv[1]
    data_dir = os.environ.get("KNOWTRACE_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    with open(os.path.join(data_dir, "known_1000.json"), encoding="utf-8") as f:
        known = json.load(f)
    assert len(known) == 1209

    import tokenizers
    import transformers
    vocab = GgufVocab(path)
    rule = LlamaCppRule(vocab, build_sentencepiece(vocab))
    hf, loader = load_transformers(path, vocab)
    print("tokenizer keys:", " ".join(vocab.keys))
    print("transformers loaded through", loader)

    def hf_ids(text, add_special=True):
        return hf(text, add_special_tokens=add_special)["input_ids"]

    checked = 0
    out = {"meta": {
        "model": os.path.basename(path),
        "architecture": vocab.architecture,
        "vocab_size": len(vocab.pieces),
        "bos": vocab.bos, "eos": vocab.eos, "unk": vocab.unk, "pad": vocab.pad,
        "add_bos": vocab.add_bos, "add_eos": vocab.add_eos,
        "add_space_prefix": vocab.add_space_prefix,
        "token_types": vocab.type_counts(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "sentencepiece": sentencepiece.__version__,
        "gguf": importlib.metadata.version("gguf"),
        "hf": describe_transformers(hf),
    }, "known": {}, "known_hf": {}, "hand": [], "random": []}

    for r in known:
        key = str(r["known_id"])
        p, s = rule.encode(r["prompt"]), rule.encode(r["subject"], add_special=False)
        checked += rule.check_whole_text(r["prompt"], p)
        checked += rule.check_whole_text(r["subject"], s, add_special=False)
        out["known"][key] = {"p": p, "s": s}
        hp, hs = hf_ids(r["prompt"]), hf_ids(r["subject"], False)
        if (hp, hs) != (p, s):
            out["known_hf"][key] = {"p": hp, "s": hs}

    for text in list(base.HAND) + GEMMA_HAND:
        ids = rule.encode(text)
        checked += rule.check_whole_text(text, ids)
        out["hand"].append({
            "text": text, "ids": ids, "hf_ids": hf_ids(text),
            "decode_hf": hf.decode(ids, skip_special_tokens=False),
            "decode_hf_skip": hf.decode(ids, skip_special_tokens=True),
            "pieces_hf": [hf.decode([i]) for i in ids]})

    for text in base.random_texts(250):
        ids = rule.encode(text)
        checked += rule.check_whole_text(text, ids)
        out["random"].append({"text": text, "ids": ids, "hf_ids": hf_ids(text)})

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    differ = lambda rows: sum(1 for x in rows if x["ids"] != x["hf_ids"])  # noqa: E731
    kh = out["known_hf"]
    print(f"known: {len(out['known'])} facts; transformers differs on "
          f"{sum(1 for k in kh if kh[k]['p'] != out['known'][k]['p'])} prompts, "
          f"{sum(1 for k in kh if kh[k]['s'] != out['known'][k]['s'])} subjects")
    print(f"hand: {len(out['hand'])} texts, {differ(out['hand'])} differ; "
          f"random: {len(out['random'])} texts, {differ(out['random'])} differ")
    print(f"sentencepiece on the whole text agreed on all {checked} control-free texts "
          f"without space runs")
    print(f"wrote {os.path.relpath(OUT, ROOT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
