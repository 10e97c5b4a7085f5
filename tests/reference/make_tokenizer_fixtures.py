#!/usr/bin/env python3
"""Trains the small byte-level BPE tokenizers under tests/fixtures/tokenizers/
and writes the golden encodings that tests/unit/test_tokenizer.cpp checks.

Oracle: the Hugging Face `tokenizers` library (and `transformers`, which saves
each tokenizer the way real checkpoints are saved and is used to cross-check
the ids). Run:

    KNOWTRACE_DATA_DIR=/path/to/data python3 tests/reference/make_tokenizer_fixtures.py

$KNOWTRACE_DATA_DIR/known_1000.json (the ROME "known facts" set) is read for
training text and for the goldens; it is never copied into the repository:
the goldens keep only token ids and byte offsets, keyed by known_id.

Everything is deterministic (seeded corpus, deterministic trainer).

Fixtures written (each directory is a loadable HF tokenizer checkpoint):
  gpt2/    ByteLevel pre-tokenizer (GPT-2 regex), "<|endoftext|>" special,
           one non-special added token "<fact>", no BOS.
  llama3/  Split(Llama-3 regex) + ByteLevel(use_regex=False), ignore_merges,
           "<|begin_of_text|>", "<|end_of_text|>", a reserved special and an
           lstrip added token; TemplateProcessing adds BOS.
  qwen2/   NFC normalizer, Split(Qwen2 regex, single digits) + ByteLevel(use_regex=False),
           "<|endoftext|>", "<|im_start|>", "<|im_end|>", no BOS.

golden.json per fixture (compact JSON):
  known: {known_id: {p: prompt ids (specials as the tokenizer adds them),
                     s: subject ids (no specials), o: flat byte offsets of the
                     prompt tokens [b0,e0,b1,e1,...], x: indices of tokens
                     that cover only part of a multi-byte character,
                     n: tokens touching characters the normalizer changes}}
  hand:  [{text, ids, ids_plain (add_special_tokens=False), o, x, n,
           decode, decode_skip}]
  random: [{text, ids, o, x, n}] for 250 seeded random strings
  variants (gpt2 only): the same hand-written prompts through modified copies
  of the gpt2 tokenizer: trim_offsets (post-processor ByteLevel with
  trim_offsets=True), add_prefix_space (ByteLevel pre-tokenizer with
  add_prefix_space=True), smollm (Sequence[Digits(individual_digits=True),
  ByteLevel]) -- the test rebuilds the same modifications.

Offsets: HF gives character offsets; they are converted to byte offsets of the
UTF-8 text here. A token that covers only part of a multi-byte character gets
the whole character's range from HF; such tokens are listed in `x` and the
test only checks that knowtrace's byte range lies inside HF's range.
Where the normalizer changes the text (NFC, qwen2 only) a record carries
n = [[token index, lo, hi], ...] for the tokens touching changed characters:
HF aligns a composed character with one of its source characters, knowtrace
with all of them, so for those tokens the test checks only that knowtrace's
range lies within [lo, hi) (the changed characters plus HF's range).
"""
import json
import os
import random
import sys
import tempfile

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

GPT2_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                r"|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

VOCAB_SIZE = 2000
SEED = 20240611

# --------------------------------------------------------------------------
# Training corpus: template sentences (seeded) + fixed multilingual snippets
# + the known_1000 prompts.

NAMES = ["Alice", "Bob", "Carla", "Dmitri", "Emeka", "Fatima", "Gustav", "Hiro",
         "Ingrid", "Jamal", "Keiko", "Luis", "Marta", "Nils", "Olga", "Pedro",
         "Quentin", "Rosa", "Sven", "Tariq", "Ursula", "Viktor", "Wen", "Yusuf"]
PLACES = ["Paris", "Berlin", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Delhi",
          "Toronto", "Sydney", "Madrid", "Rome", "Vienna", "Seoul", "Nairobi",
          "Chicago", "Istanbul", "Prague", "Dublin", "Kyoto", "Lisbon", "Warsaw"]
THINGS = ["the river", "a small company", "the old library", "the museum",
          "the national team", "a famous painter", "the university", "the band",
          "the mountain", "the railway", "the newspaper", "the film", "the album",
          "the football club", "the cathedral", "the software", "the language"]
VERBS = ["is located in", "was founded in", "was born in", "works for",
         "is a citizen of", "plays the sport of", "is owned by", "speaks",
         "was written by", "is the capital of", "is produced by", "died in",
         "was developed by", "is part of", "premiered on", "belongs to"]
ADJ = ["quiet", "large", "ancient", "modern", "popular", "famous", "remote",
       "busy", "northern", "southern", "beautiful", "important"]
FIXED = [
    "Le café est très célèbre à Paris, où l'on parle français.",
    "Der Bär läuft über die Straße; Grüße aus München!",
    "Москва — столица России. Привет, мир!",
    "東京は日本の首都です。京都も有名です。",
    "北京是中国的首都。你好，世界！",
    "El niño comió paella en España, ¿verdad?",
    "Ελληνικά γράμματα: αβγδε.",
    "I ❤️ emoji 😀🎉 and 👍🏽 reactions!",
    "Numbers: 3.14159, 2,718, 1000000, 42nd, 1999-12-31, 0x1F.",
    "def main():\n    return 0\n",
    "Tabs\tand\tnewlines\nare\n\nwhitespace.",
    "She said: \"it's fine, they're here, we've seen, I'm sure, you'll go, he'd stay\".",
    "ÀÉÎÕÜ àéîõü çñß ø å æ œ",
    "Tōkyō, Kyōto and Ōsaka are cities in Japan.",
]


def english_corpus(rng, n):
    out = []
    for _ in range(n):
        kind = rng.randrange(6)
        a, b = rng.choice(NAMES), rng.choice(PLACES)
        if kind == 0:
            out.append(f"{a} {rng.choice(VERBS)} {b}.")
        elif kind == 1:
            out.append(f"{rng.choice(THINGS).capitalize()} {rng.choice(VERBS)} "
                       f"{b} in {rng.randrange(1500, 2025)}.")
        elif kind == 2:
            out.append(f"In {b}, {a} met {rng.choice(NAMES)} near {rng.choice(THINGS)}; "
                       f"it was {rng.choice(ADJ)} and {rng.choice(ADJ)}.")
        elif kind == 3:
            out.append(f"{a}'s {rng.choice(ADJ)} house has {rng.randrange(2, 999)} rooms "
                       f"and costs ${rng.randrange(1000, 99999999)}.")
        elif kind == 4:
            out.append(f"\"Where is {b}?\" asked {a}. \"It's {rng.randrange(3, 900)} km away,\" "
                       f"they'd say.")
        else:
            out.append(f"{rng.choice(THINGS).capitalize()} of {b}\n\t- {rng.choice(ADJ)}"
                       f" ({rng.randrange(10, 99)}%)")
    return out


# --------------------------------------------------------------------------
# Hand-written prompts for the goldens.

HAND = [
    "Hello world",
    "The Eiffel Tower is located in the city of",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple     spaces    inside",
    "Tabs\tinside\tthe\ttext",
    "Line one\nLine two\n\nLine four",
    "Windows\r\nline\r\nendings",
    "\n\n\nstarts with newlines",
    "ends with newlines\n\n",
    "mixed \t \n whitespace \n\t run",
    "It's they're we've I'm you'll he'd she's",
    "IT'S THEY'RE WE'VE I'M YOU'LL HE'D",
    "don't won't can't isn't",
    "'s 't 're 've 'm 'll 'd",
    "1",
    "12345",
    "The year 1999 and 2024.",
    "Pi is 3.14159265358979323846264338327950288",
    "Phone: +1 (555) 123-4567",
    "A big number: 123456789012345678901234567890",
    "1,000,000 and 1.000.000 and 1 000 000",
    "abc123def456",
    "Café au lait",
    "naïve résumé façade",
    "Jaromír Jágr plays ice hockey",
    "Kyōto Prefecture",
    "Arne Vidar Røed",
    "Straße und Grüße",
    "Москва является столицей России",
    "Привет, как дела?",
    "東京都は日本の首都です",
    "北京是中国的首都",
    "한국어 텍스트",
    "مرحبا بالعالم",
    "שלום עולם",
    "हिन्दी पाठ",
    "ไทย",
    "Emoji: 😀",
    "Family: 👨‍👩‍👧‍👦 done",
    "Flags 🇯🇵🇫🇷 and skin tone 👍🏽",
    "Math: ∑ ∫ √ ∞ ≠ ≤",
    "Ancient 𐍈 Gothic letter and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Combining: e\u0301 a\u0308 n\u0303",
    "Decomposed: Cafe\u0301 A\u030angstro\u0308m \u1100\u1161\u11a8 q\u0307\u0323",
    "Singletons: \u212b \u2126 \u0958 \ufb01 Vie\u0323\u0302t \u1e0b\u0323 \u0061\u0328\u0301",
    "Non-breaking\u00a0space and ideographic\u3000space",
    "Zero\u200bwidth and soft\u00adhyphen",
    "Punctuation!!! ??? ... --- ;;; :::",
    "Quotes \"double\" and 'single' and «guillemets»",
    "Code: if (x == 1) { return y[0]; }",
    "path/to/file.txt and https://example.com/a?b=c&d=e",
    "email@example.com #hashtag @mention",
    "<|endoftext|>",
    "Before<|endoftext|>after",
    "text <|endoftext|> with spaces",
    "<|endoftext|><|endoftext|>",
    "<|begin_of_text|>Hello",
    "Hi<|end_of_text|>",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<fact>The Louvre is in Paris<fact>",
    "ask <|mask|> now",
    "<|reserved_special_token_0|>",
    "<|endoftext",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "==================================================",
    "The capital of Kyōto Prefecture is the city of",
    "Passer à l'acte was written by",
    "",
    " ",
    "\t",
    "\n",
    "x",
]


# Seeded random strings mixing scripts, digits, odd whitespace, combining
# marks, control characters, contractions and added-token texts.
RANDOM_POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ",
    "  \t\n\r\x0b\x0c", "'\u2019\"!?.,;:-_()[]{}<>|/\\@#$%^&*+=~`",
    "éèêëàâäçñøåæœßÀÉÎ", "абвгдежзийклмнопрстуфхцчшщъыьэюя", "日本語中文字東京北京",
    "😀🎉👍🏽❤️\u200d\u200b\ufeff", "\u0301\u0308\u0323\u0307",
    "\u00a0\u3000\u2028\u2029\u0085\u1680\u2000\u200a\u202f\u205f",
    "١٢٣٤٥٦٧٨٩٠", "ⅠⅡⅢ½²³", "𝔘𝔫𝔦", "ǅǈǋ", "\x00\x01\x1f\x7f", "ﬁ", "\u1100\u1161\u11a8",
]
RANDOM_WORDS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "<|endoftext|>",
                "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>", "<fact>",
                "<|mask|>", " <|mask|>", "<|endoftext"]


def random_texts(n, seed=SEED + 1):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = ""
        for _ in range(rng.randrange(1, 25)):
            if rng.random() < 0.15:
                s += rng.choice(RANDOM_WORDS)
            else:
                pool = rng.choice(RANDOM_POOLS)
                s += "".join(rng.choice(pool) for _ in range(rng.randrange(1, 5)))
        out.append(s)
    return out


# --------------------------------------------------------------------------

def byte_offsets(text):
    """pos[c] = byte offset of character c (len(text)+1 entries)."""
    pos = [0]
    for ch in text:
        pos.append(pos[-1] + len(ch.encode("utf-8")))
    return pos


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


CHAR_BYTES = bytes_to_unicode()


def token_bytes(tok, added_contents):
    if tok in added_contents:
        return tok.encode("utf-8")
    try:
        return bytes(CHAR_BYTES[c] for c in tok)
    except KeyError:
        return tok.encode("utf-8")


def encode_record(tok, text, add_special, added_contents):
    enc = tok.encode(text, add_special_tokens=add_special)
    pos = byte_offsets(text)
    flat, partial = [], []
    for i, (t, (a, b)) in enumerate(zip(enc.tokens, enc.offsets)):
        flat += [pos[a], pos[b]]
        special_inserted = enc.special_tokens_mask[i] == 1 and (a, b) == (0, 0) \
            and t not in text
        if special_inserted:
            continue
        try:
            token_bytes(t, added_contents).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            partial.append(i)
    return enc.ids, flat, partial, normalized_tokens(tok, text, enc)


def _composing_starters():
    """Starters (ccc 0) that can be the second character of a composition."""
    import unicodedata
    out = set()
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            if len(parts) == 2 and unicodedata.combining(chr(parts[1])) == 0:
                out.add(parts[1])
    out.update(range(0x1161, 0x1176))  # Hangul vowel jamo (L+V)
    out.update(range(0x11A8, 0x11C3))  # Hangul trailing jamo (LV+T)
    return out


_COMPOSING_STARTERS = None


def nfc_changed_runs(text):
    """Character ranges of the runs (a starter and what may combine with it)
    that NFC changes."""
    import unicodedata
    global _COMPOSING_STARTERS
    if _COMPOSING_STARTERS is None:
        _COMPOSING_STARTERS = _composing_starters()
    bounds = [0]
    for i, ch in enumerate(text):
        if i and unicodedata.combining(ch) == 0 and ord(ch) not in _COMPOSING_STARTERS:
            bounds.append(i)
    bounds.append(len(text))
    runs = []
    for a, b in zip(bounds, bounds[1:]):
        if a < b and unicodedata.normalize("NFC", text[a:b]) != text[a:b]:
            runs.append((a, b))
    return runs


def normalized_tokens(tok, text, enc):
    """For a normalizing tokenizer (NFC: qwen2): [index, lo, hi] for each token
    touching characters NFC changes, where [lo, hi) is the byte range of those
    characters' runs together with HF's range for the token. HF aligns such
    tokens in its own way (a composed character with one source character);
    the test only checks that knowtrace's range lies within [lo, hi)."""
    if tok.normalizer is None:
        return []
    runs = nfc_changed_runs(text)
    if not runs:
        return []
    pos = byte_offsets(text)
    out = []
    for i, (a, b) in enumerate(enc.offsets):
        if enc.special_tokens_mask[i] == 1 and (a, b) == (0, 0):
            continue
        hit = [(ra, rb) for ra, rb in runs if ra < max(b, a + 1) and a < rb]
        if hit:
            lo = min([a] + [ra for ra, _ in hit])
            hi = max([b] + [rb for _, rb in hit])
            out.append([i, pos[lo], pos[hi]])
    return out


def train(name, pre_tok, specials, corpus, post=None, ignore_merges=False,
          extra_added=()):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    for t in extra_added:
        if t.special:
            tok.add_special_tokens([t])
        else:
            tok.add_tokens([t])
    tok.post_processor = post if post is not None else processors.ByteLevel(trim_offsets=False)
    if ignore_merges:
        d = json.loads(tok.to_str())
        d["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(d))
    return tok


def save(tok, name, bos, eos, extra_kwargs=None):
    from transformers import PreTrainedTokenizerFast
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    kwargs = dict(tokenizer_object=tok, eos_token=eos)
    if bos is not None:
        kwargs["bos_token"] = bos
    kwargs.update(extra_kwargs or {})
    fast = PreTrainedTokenizerFast(**kwargs)
    fast.save_pretrained(d)
    # Pretty-printing is not needed; keep the files as transformers wrote them.
    return d


def goldens(name, d, known, variants=None):
    from transformers import AutoTokenizer
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(d)
    added = {t.content for t in tok.get_added_tokens_decoder().values()}
    out = {"tokenizer": name, "tokenizers_version": tokenizers.__version__,
           "known": {}, "hand": []}
    for r in known:
        ids, flat, partial, norm = encode_record(tok, r["prompt"], True, added)
        auto_ids = auto(r["prompt"])["input_ids"]
        assert auto_ids == ids, (name, r["known_id"], auto_ids, ids)
        s_ids = tok.encode(r["subject"], add_special_tokens=False).ids
        rec = {"p": ids, "s": s_ids, "o": flat}
        if partial:
            rec["x"] = partial
        if norm:
            rec["n"] = norm
        out["known"][str(r["known_id"])] = rec
    for text in HAND:
        ids, flat, partial, norm = encode_record(tok, text, True, added)
        auto_ids = auto(text)["input_ids"]
        assert auto_ids == ids, (name, text, auto_ids, ids)
        plain = tok.encode(text, add_special_tokens=False).ids
        rec = {"text": text, "ids": ids, "ids_plain": plain, "o": flat, "x": partial,
               "decode": tok.decode(ids, skip_special_tokens=False),
               "decode_skip": tok.decode(ids, skip_special_tokens=True)}
        if norm:
            rec["n"] = norm
        out["hand"].append(rec)
    out["random"] = []
    for text in random_texts(250):
        ids, flat, partial, norm = encode_record(tok, text, True, added)
        rec = {"text": text, "ids": ids, "o": flat, "x": partial}
        if norm:
            rec["n"] = norm
        out["random"].append(rec)
    if variants:
        out["variants"] = {}
        for vname, mutate in variants.items():
            spec = json.loads(tok.to_str())
            mutate(spec)
            vt = Tokenizer.from_str(json.dumps(spec))
            rows = []
            for text in HAND:
                ids, flat, partial, _ = encode_record(vt, text, True, added)
                rows.append({"ids": ids, "o": flat, "x": partial})
            out["variants"][vname] = rows
    with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def mut_trim(spec):
    spec["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False,
                              "trim_offsets": True, "use_regex": True}


def mut_prefix(spec):
    spec["pre_tokenizer"]["add_prefix_space"] = True


def mut_smollm(spec):
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": True}]}


def load_known():
    """known_1000 from $KNOWTRACE_DATA_DIR (never copied into the repository)."""
    data_dir = os.environ.get("KNOWTRACE_DATA_DIR")
    if not data_dir:
        sys.exit("set KNOWTRACE_DATA_DIR to the folder holding known_1000.json")
    with open(os.path.join(data_dir, "known_1000.json"), encoding="utf-8") as f:
        known = json.load(f)
    assert len(known) == 1209
    return known


def main():
    known = load_known()

    rng = random.Random(SEED)
    corpus = english_corpus(rng, 6000) + FIXED * 20 + [r["prompt"] for r in known]
    rng.shuffle(corpus)

    # gpt2 ---------------------------------------------------------------
    tok = train("gpt2", pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
                ["<|endoftext|>"], corpus,
                extra_added=[AddedToken("<fact>", special=False, normalized=False)])
    d = save(tok, "gpt2", bos="<|endoftext|>", eos="<|endoftext|>")
    goldens("gpt2", d, known, variants={"trim_offsets": mut_trim,
                                        "add_prefix_space": mut_prefix,
                                        "smollm": mut_smollm})

    # llama3 -------------------------------------------------------------
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    tok = train("llama3", pre, [bos, eos, "<|reserved_special_token_0|>"], corpus,
                post=processors.ByteLevel(trim_offsets=False), ignore_merges=True,
                extra_added=[AddedToken("<|mask|>", special=True, lstrip=True,
                                        normalized=False)])
    # TemplateProcessing needs the id BOS got in training.
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                      special_tokens=[(bos, bos_id)])])
    d = save(tok, "llama3", bos=bos, eos=eos)
    goldens("llama3", d, known)

    # qwen2 --------------------------------------------------------------
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = train("qwen2", pre, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], corpus)
    tok.normalizer = normalizers.NFC()  # as Qwen2's tokenizer.json has
    d = save(tok, "qwen2", bos=None, eos="<|im_end|>",
             extra_kwargs={"pad_token": "<|endoftext|>"})
    goldens("qwen2", d, known)

    for name in ("gpt2", "llama3", "qwen2"):
        d = os.path.join(OUT, name)
        sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
        print(name, sizes)


if __name__ == "__main__":
    main()
