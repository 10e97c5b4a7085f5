#!/usr/bin/env python3
"""Builds the small SentencePiece-style tokenizers (Metaspace "▁" + BPE with
byte fallback) under tests/fixtures/tokenizers/ and writes the golden
encodings the C++ tokenizer tests check against. The byte-level BPE
counterparts come from make_tokenizer_fixtures.py, whose corpus, hand-written
prompts, random strings and offset helpers this script imports.

Oracle: the Hugging Face `tokenizers` library; `transformers` saves each
tokenizer the way real checkpoints are saved and AutoTokenizer cross-checks
the ids of every text in the goldens. Run:

    KNOWTRACE_DATA_DIR=/work/shared/data /tmp/venv/bin/python tests/reference/make_sp_tokenizer_fixtures.py

$KNOWTRACE_DATA_DIR/known_1000.json is read for training text and for the
goldens; it is never copied into the repository: the goldens keep only token
ids and byte offsets, keyed by known_id. Everything is deterministic (seeded
corpus, deterministic trainer).

Vocabulary: a BPE is trained on the corpus after the shape's own space
handling (" " -> "▁", a leading "▁" where the shape prepends one), so the
learned pieces carry "▁" like a real SentencePiece vocabulary. The alphabet
is fixed beforehand (printable ASCII, "▁" and a few frequent accented
letters; see alphabet()), so CJK, emoji, Cyrillic, Greek and most accented
letters are not pieces and go through byte fallback. The final model is assembled by hand
with ids laid out like the real checkpoints: the shape's added tokens first,
then the 256 byte pieces "<0x00>".."<0xFF>", then the trained pieces. Merges
only join trained pieces into trained pieces.

Fixtures written (each directory is a loadable HF tokenizer checkpoint):
  llama2/   Llama 2 / TinyLlama / Phi-3 legacy: 0 <unk>, 1 <s>, 2 </s>;
            normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no
            pre-tokenizer; TemplateProcessing "<s> $A"; decoder
            Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)].
            Tab, newline and carriage return have no piece (byte fallback),
            as in Llama 2.
  gemma/    Gemma: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 <mask>, then the
            specials <start_of_turn> ... [@BOS@], <unused0>..<unused98> and
            the non-special added tokens <fact>, </fact>; normalizer
            Replace(" ", "▁") only (no prefix "▁"); TemplateProcessing
            "<bos> $A"; decoder without Strip. Keeps tab/newline pieces.
  mistral/  Mistral v0.3: 0 <unk>, 1 <s>, 2 </s>, then [INST], [/INST],
            [TOOL_CALLS], [AVAILABLE_TOOLS], [/AVAILABLE_TOOLS],
            [TOOL_RESULTS], [/TOOL_RESULTS], [control_8]..[control_20];
            no normalizer, pre-tokenizer Metaspace(prepend_scheme="first",
            split=False); TemplateProcessing "<s> $A"; llama2's decoder.

golden.json per fixture (compact JSON), keys shared with the byte-level ones:
  known: {known_id: {p: prompt ids (specials added), s: subject ids (no
          specials), o: flat byte offsets [b0,e0,b1,e1,...] of the prompt
          tokens, x: indices of tokens whose bytes are not valid UTF-8 on
          their own (byte pieces of a multi-byte character), e: indices of
          tokens that are only an inserted "▁"}}; x and e left out when empty.
  hand:   [{text, ids, ids_plain (add_special_tokens=False), o, x, e,
            decode, decode_skip, pieces}] for the byte-level HAND prompts
            followed by SP_HAND; decode / decode_skip are tokenizers' decode
            of ids with skip_special_tokens False / True, pieces[i] the
            decode of ids[i] alone (skip_special_tokens=False, so specials
            show as their text).
  random: [{text, ids, o, x, e}] for the byte-level module's 250 random strings.
  variants (llama2 only): [{name, normalizer, pre_tokenizer, rows}]:
          normalizer / pre_tokenizer are the JSON objects (as tokenizer.json
          holds them, null for none) that replace those two keys of llama2's
          tokenizer.json, rows = [{ids, o, x, e}] for the byte-level HAND
          prompts in order:
            metaspace_always_split  Metaspace(prepend_scheme="always", split=True)
            metaspace_never         Metaspace(prepend_scheme="never", split=False)
            metaspace_first_split   Metaspace(prepend_scheme="first", split=True)
            nfkc                    normalizer Sequence[NFKC, Prepend, Replace]
          nfkc rows also carry n = [[index, lo, hi], ...] for the tokens touching
          characters NFKC changes, as the byte-level qwen2 goldens do for NFC.
  tokenizer, tokenizers_version.

Offsets: HF gives character offsets; they are converted to byte offsets of
the UTF-8 text. The byte pieces of one character all get that character's
range from HF (they are listed in x). Token bytes for x: "<0xXX>" is that
byte, an added token its text, any other piece its text with "▁" read as a
space.

Inserted "▁" (e): where the shape prepends "▁" (llama2: the normalizer, in
front of every stretch of text between added tokens; mistral: Metaspace
"first", only in front of a text that does not start with an added token, a
space or "▁"), HF aligns the inserted "▁" with the character after it. When
BPE leaves it alone as a token "▁" (the next character has no "▁x" piece, or
is a byte-fallback character), that token has HF range of the next character
although it covers no input byte; e lists such tokens so a test can accept an
empty range at that point instead. A "▁" merged with real text ("▁Hello",
"▁▁" from "▁" + a space) is not in e. Example (llama2, " leading"): "▁"
(0,1) in e, then "▁l" (0,2) -- both ranges start at the real space.

HF behaviour the goldens pin down (tokenizers 0.23):
  - llama2's Prepend runs on each stretch between added tokens:
    "Hello<s>world" -> ... "<s>", "▁world"; mistral's Metaspace "first" only
    at text offset 0: ... "<s>", "w", "or", "ld".
  - Added tokens go through the decoder unchanged. Strip(" ", 1, 0) acts on
    the fused string, so it removes the first space only when no added token
    comes first: decode([<s>, ▁Hello]) = "<s> Hello", decode_skip = "Hello";
    each piece decoded alone loses its own leading space ("▁world" -> "world",
    "▁" -> "").
  - A lone byte piece of a multi-byte character decodes to U+FFFD.
"""
import collections
import functools
import json
import os
import random
import sys
import unicodedata
from unittest import mock

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_tokenizer_fixtures as base  # noqa: E402

META = "\u2581"
TRAINED_SIZE = 1700  # pieces the BPE trainer learns (alphabet included)
LATIN_EXTRA = 8      # non-ASCII Latin letters that get a piece of their own
CONTROLS = "\t\n\r"

# How the training text is cut into words: tab / newline runs alone; a run
# of "▁" stays alone except its last "▁", which opens the next word (so "▁▁"
# pieces are learned, as SentencePiece vocabularies have them for indentation).
WORD_PATTERN = f"[{CONTROLS}]+|{META}+(?={META})|{META}?[^{META}{CONTROLS}]+|{META}+"

# --------------------------------------------------------------------------
# The three shapes.

GEMMA_SPECIALS = (["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                   "<image_soft_token>", "[@BOS@]"]
                  + [f"<unused{i}>" for i in range(99)])
MISTRAL_CONTROLS = (["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
                     "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]
                    + [f"[control_{i}]" for i in range(8, 21)])


def sp_decoder(strip):
    steps = [decoders.Replace(META, " "), decoders.ByteFallback(), decoders.Fuse()]
    if strip:
        steps.append(decoders.Strip(" ", 1, 0))
    return decoders.Sequence(steps)


# added: [(content, special)] in id order from 0. prefix: where HF inserts a
# "▁" ("each": in front of every stretch between added tokens, "first": only
# in front of the text's start, "always": in front of every stretch not
# starting with a space or "▁", "never"). controls: tab / newline get pieces.
SHAPES = {
    "llama2": dict(
        added=[("<unk>", True), ("<s>", True), ("</s>", True)],
        normalizer=lambda: normalizers.Sequence([normalizers.Prepend(META),
                                                 normalizers.Replace(" ", META)]),
        pre_tokenizer=lambda: None, strip=True, prefix="each", controls=False,
        bos="<s>", tokens=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
        config=dict(add_bos_token=True, add_eos_token=False)),
    "gemma": dict(
        added=([("<pad>", True), ("<eos>", True), ("<bos>", True), ("<unk>", True),
                ("<mask>", True)] + [(t, True) for t in GEMMA_SPECIALS]
               + [("<fact>", False), ("</fact>", False)]),
        normalizer=lambda: normalizers.Replace(" ", META),
        pre_tokenizer=lambda: None, strip=False, prefix="never", controls=True,
        bos="<bos>", tokens=dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                 unk_token="<unk>", mask_token="<mask>"),
        config=dict(add_bos_token=True, add_eos_token=False)),
    "mistral": dict(
        added=[("<unk>", True), ("<s>", True), ("</s>", True)]
        + [(t, True) for t in MISTRAL_CONTROLS],
        normalizer=lambda: None,
        pre_tokenizer=lambda: pre_tokenizers.Metaspace(replacement=META, prepend_scheme="first",
                                                       split=False),
        strip=True, prefix="first", controls=False,
        bos="<s>", tokens=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
        config=dict(add_bos_token=True, add_eos_token=False)),
}

# llama2 with other space handling: (name, normalizer, pre_tokenizer, prefix rule).
VARIANTS = [
    ("metaspace_always_split", None,
     pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True), "always"),
    ("metaspace_never", None,
     pre_tokenizers.Metaspace(replacement=META, prepend_scheme="never", split=False), "never"),
    ("metaspace_first_split", None,
     pre_tokenizers.Metaspace(replacement=META, prepend_scheme="first", split=True), "first"),
    ("nfkc", normalizers.Sequence([normalizers.NFKC(), normalizers.Prepend(META),
                                   normalizers.Replace(" ", META)]), None, "each"),
]

# SentencePiece-specific prompts added to the byte-level HAND list.
SP_HAND = [
    "Emoji 🦙 and 🤗 faces",
    "🎉",
    "中",
    "emoji at the end 🎉",
    "日本語のテキストです",
    "Ærøskøbing, Þórshöfn and Łódź",
    "Ŋ ŧ ħ ĳ ǂ ȸ",
    "é",
    "Ünïcödé wörds",
    "a\u0301 combining acute",
    "literal ▁ metaspace",
    "▁",
    "▁leading metaspace",
    "▁▁double▁▁metaspace▁",
    " ▁ space then metaspace",
    "<0x41> looks like a byte piece",
    "<0x0A>",
    "   three leading spaces",
    "  ",
    "a  b   c    d     e",
    "\ttab first",
    "newline\nthen\n",
    "\r\n",
    "\x00\x01 control bytes\x7f",
    "\u00a0nbsp first",
    "0123456789 and 3.14 and 2718281828",
    "Hello<s>world",
    "<s>",
    "</s>",
    "<s>Hello</s>",
    " <s> spaced </s> ",
    "x<s>",
    "<unk>",
    "[INST] Hi [/INST]",
    "[INST]What is the capital of France?[/INST] Paris</s>",
    "[TOOL_CALLS][AVAILABLE_TOOLS] tools [/AVAILABLE_TOOLS]",
    "[control_8][control_20] but [control_21] is text",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<bos><bos>",
    "<pad> <eos> <mask>",
    "<unused5>",
    "<unused98><unused99>",
    "<unused999>",
    "<fact>The Louvre is in Paris</fact>",
    " <fact> spaced",
    "[@BOS@]",
    "<start_of_image><image_soft_token><end_of_image>",
]


# --------------------------------------------------------------------------
# Building.

def corpus_for(shape, corpus):
    """The corpus as the shape's normalization writes it."""
    prefix = META if shape["prefix"] != "never" else ""
    return [prefix + t.replace(" ", META) for t in corpus]


def alphabet(texts, controls):
    """The characters that get a piece: "▁", printable ASCII, the LATIN_EXTRA
    most frequent other Latin letters and, if `controls`, tab / newline.
    Everything else (CJK, emoji, Cyrillic, Greek, most accented letters)
    goes through byte fallback. Picked here, ties broken by code point, as
    the trainer's own limit_alphabet breaks ties between equally frequent
    characters in no fixed order."""
    counts = collections.Counter(ch for t in texts for ch in t)
    keep = {META} | {chr(c) for c in range(0x21, 0x7f)}
    if controls:
        keep |= {c for c in CONTROLS if c in counts}
    latin = sorted((c for c in counts if "\x7f" < c < "\u0250" and c.isalpha()),
                   key=lambda c: (-counts[c], c))
    return sorted(keep | set(latin[:LATIN_EXTRA]))


def train_pieces(texts, controls):
    """Trained pieces (in the trainer's id order) and merges."""
    chars = alphabet(texts, controls)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")
    trainer = trainers.BpeTrainer(vocab_size=TRAINED_SIZE, min_frequency=2,
                                  initial_alphabet=chars, limit_alphabet=len(chars),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    pieces = sorted(model["vocab"], key=model["vocab"].get)
    assert sorted(p for p in pieces if len(p) == 1) == chars
    return pieces, [tuple(m) for m in model["merges"]]


def byte_piece(b):
    return "<0x%02X>" % b


def assemble(shape, pieces, merges):
    """The SentencePiece-layout tokenizer: added tokens, byte pieces, pieces."""
    vocab = {}
    for content, _ in shape["added"]:
        vocab[content] = len(vocab)
    for b in range(256):
        vocab[byte_piece(b)] = len(vocab)
    first_trained = len(vocab)
    for p in pieces:
        vocab.setdefault(p, len(vocab))

    def trained(p):
        return vocab.get(p, -1) >= first_trained

    merges = [(a, b) for a, b in merges if trained(a) and trained(b) and trained(a + b)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=True,
                               unk_token="<unk>"))
    tok.normalizer = shape["normalizer"]()
    tok.pre_tokenizer = shape["pre_tokenizer"]()
    tok.decoder = sp_decoder(shape["strip"])
    for content, special in shape["added"]:
        t = AddedToken(content, special=special, normalized=False)
        if special:
            tok.add_special_tokens([t])
        else:
            tok.add_tokens([t])
    bos = shape["bos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
        special_tokens=[(bos, vocab[bos])])
    for content, _ in shape["added"]:
        assert tok.token_to_id(content) == vocab[content], content
    return tok


def save(name, shape, tok):
    from transformers import PreTrainedTokenizerFast
    d = os.path.join(base.OUT, name)
    os.makedirs(d, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **shape["tokens"], **shape["config"])
    fast.save_pretrained(d)
    # The flags are what a C++ loader reads for BOS/EOS; make sure they are
    # written whatever this transformers version does with the kwargs.
    path = os.path.join(d, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.update(shape["config"])
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return d


# --------------------------------------------------------------------------
# Goldens.

class Layout:
    """What a record needs to know about a tokenizer's ids and its "▁" rule."""

    def __init__(self, tok, prefix):
        self.tok = tok
        self.prefix = prefix
        self.added = set(tok.get_added_tokens_decoder())
        self.byte0 = tok.token_to_id(byte_piece(0))
        assert all(tok.token_to_id(byte_piece(b)) == self.byte0 + b for b in range(256))

    def token_bytes(self, tid, piece):
        if tid in self.added:
            return piece.encode("utf-8")
        if self.byte0 <= tid < self.byte0 + 256:
            return bytes([tid - self.byte0])
        return piece.replace(META, " ").encode("utf-8")

    def inserts_prefix(self, text, start):
        """Whether HF puts a "▁" in front of the stretch of text at `start`."""
        if self.prefix == "each":
            return True
        if self.prefix == "never" or text[start] in " " + META:
            return False
        return self.prefix == "always" or start == 0


def valid_utf8(b):
    try:
        b.decode("utf-8", errors="strict")
        return True
    except UnicodeDecodeError:
        return False


def encode_record(layout, text, add_special=True):
    """ids, flat byte offsets, x (partial characters), e (inserted "▁")."""
    enc = layout.tok.encode(text, add_special_tokens=add_special)
    pos = base.byte_offsets(text)
    flat, partial, inserted = [], [], []
    start, fresh = 0, True  # start of the current stretch; no token of it seen yet
    for i, (tid, piece, (a, b)) in enumerate(zip(enc.ids, enc.tokens, enc.offsets)):
        flat += [pos[a], pos[b]]
        if tid in layout.added:
            if a < b:  # matched in the text (the template's BOS has an empty range)
                start, fresh = b, True
            continue
        if not valid_utf8(layout.token_bytes(tid, piece)):
            partial.append(i)
        if fresh:
            fresh = False
            if piece == META and layout.inserts_prefix(text, start):
                assert (a, b) == (start, start + 1), (text, i, a, b)
                inserted.append(i)
    return enc.ids, flat, partial, inserted


@functools.lru_cache(maxsize=None)
def composing_starters():
    return base._composing_starters()


def nfkc_changed_runs(text):
    """Character ranges of the runs NFKC changes. A run starts at a character
    that neither combines with what precedes it nor decomposes into something
    that might; the runs' NFKC forms must add up to the text's."""
    starters = composing_starters()
    cuts = [0]
    for i, ch in enumerate(text):
        head = unicodedata.normalize("NFKD", ch)[:1]
        if i and unicodedata.combining(ch) == 0 and ord(ch) not in starters \
                and unicodedata.combining(head) == 0 and ord(head) not in starters:
            cuts.append(i)
    cuts.append(len(text))
    runs = [(a, b) for a, b in zip(cuts, cuts[1:]) if a < b]
    assert "".join(unicodedata.normalize("NFKC", text[a:b]) for a, b in runs) \
        == unicodedata.normalize("NFKC", text), text
    return [(a, b) for a, b in runs if unicodedata.normalize("NFKC", text[a:b]) != text[a:b]]


def nfkc_tokens(tok, text):
    """base.normalized_tokens (written for NFC) with NFKC's changed runs."""
    enc = tok.encode(text)
    with mock.patch.object(base, "nfc_changed_runs", nfkc_changed_runs):
        return base.normalized_tokens(tok, text, enc)


def row(layout, text):
    ids, flat, partial, inserted = encode_record(layout, text)
    return {"ids": ids, "o": flat, "x": partial, "e": inserted}


def variant_goldens(tok):
    spec = json.loads(tok.to_str())
    out = []
    for vname, norm, pre, prefix in VARIANTS:
        vt = Tokenizer.from_str(tok.to_str())
        vt.normalizer = norm
        vt.pre_tokenizer = pre
        vspec = json.loads(vt.to_str())
        # Only the two keys differ from the fixture's tokenizer.json.
        assert {k: v for k, v in vspec.items() if k not in ("normalizer", "pre_tokenizer")} \
            == {k: v for k, v in spec.items() if k not in ("normalizer", "pre_tokenizer")}
        layout = Layout(vt, prefix)
        rows = []
        for text in base.HAND:
            r = row(layout, text)
            if norm is not None:
                n = nfkc_tokens(vt, text)
                if n:
                    r["n"] = n
            rows.append(r)
        out.append({"name": vname, "normalizer": vspec["normalizer"],
                    "pre_tokenizer": vspec["pre_tokenizer"], "rows": rows})
    return out


def goldens(name, shape, d, known):
    from transformers import AutoTokenizer
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(d)
    layout = Layout(tok, shape["prefix"])

    def checked(text, add_special=True):
        rec = encode_record(layout, text, add_special)
        auto_ids = auto(text, add_special_tokens=add_special)["input_ids"]
        assert auto_ids == rec[0], (name, text, auto_ids, rec[0])
        return rec

    out = {"tokenizer": name, "tokenizers_version": tokenizers.__version__,
           "known": {}, "hand": [], "random": []}
    for r in known:
        ids, flat, partial, inserted = checked(r["prompt"])
        rec = {"p": ids, "s": checked(r["subject"], False)[0], "o": flat}
        if partial:
            rec["x"] = partial
        if inserted:
            rec["e"] = inserted
        out["known"][str(r["known_id"])] = rec
    for text in base.HAND + SP_HAND:
        ids, flat, partial, inserted = checked(text)
        out["hand"].append({
            "text": text, "ids": ids, "ids_plain": checked(text, False)[0], "o": flat,
            "x": partial, "e": inserted,
            "decode": tok.decode(ids, skip_special_tokens=False),
            "decode_skip": tok.decode(ids, skip_special_tokens=True),
            "pieces": [tok.decode([i], skip_special_tokens=False) for i in ids]})
    for text in base.random_texts(250):
        ids, flat, partial, inserted = checked(text)
        out["random"].append({"text": text, "ids": ids, "o": flat, "x": partial, "e": inserted})
    if name == "llama2":
        out["variants"] = variant_goldens(tok)
    with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    known = base.load_known()

    rng = random.Random(base.SEED)
    corpus = base.english_corpus(rng, 6000) + base.FIXED * 20 + [r["prompt"] for r in known]
    rng.shuffle(corpus)

    for name, shape in SHAPES.items():
        pieces, merges = train_pieces(corpus_for(shape, corpus), shape["controls"])
        d = save(name, shape, assemble(shape, pieces, merges))
        goldens(name, shape, d, known)
        loaded = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
        print(name, "vocab", loaded.get_vocab_size(), sizes)


if __name__ == "__main__":
    main()
