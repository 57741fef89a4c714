#!/usr/bin/env python3
"""Writes the fixtures of the tokenizer shapes beyond Llama-3 and GPT-2 into tests/fixtures/tokenizer/
(golden ids from Hugging Face `tokenizers`, for tests/test-tokenizer.c):

  smollm2-shape/tokenizer.json   SmolLM2's pipeline (Sequence[Digits(individual_digits), ByteLevel
                        (add_prefix_space false, with its regex)], ByteLevel decoder, SmolLM2's
                        special tokens) on a vocabulary trained by tokenizers' BpeTrainer on the
                        corpus; golden-smollm2-shape.json: the tricky strings, files, 1 MB
                        documents and random decodings of make-tokenizer-fixtures.py
  golden-splits.json    the gpt2 fixture's vocabulary under other pre-tokenizers: Split with every
                        behavior (Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous),
                        with and without invert, on a regex, a regex that matches empty strings and a
                        String; Digits with and without individual_digits; ByteLevel with and without
                        its regex and add_prefix_space; each with the ids of the tricky strings
  ignore-merges/tokenizer.json, golden-ignore-merges.json
                        a small vocabulary in which whole words are entries that their own merges
                        build differently ("abc" is a token, but the merges make "ab" + "c"), so
                        ignore_merges changes the ids; golden ids with it on and off
  qwen2-shape/tokenizer.json, golden-qwen2-shape.json
                        Qwen2's pipeline (the NFC normalizer, Qwen2's split regex, ByteLevel without
                        its regex) on a trained vocabulary, with a normalized added token written
                        decomposed; the tricky strings plus normalization cases, files, 1 MB
                        documents, decodings
  golden-nfc.json       tokenizers' NFC of every code point it changes, and of the canonical
                        decomposition of every precomposed character (Hangul sampled)
  golden-smollm2.json   SmolLM2-135M-Instruct's real tokenizer (49152 tokens), rebuilt from the
                        GGUF's tokenizer.ggml.* in the published tokenizer.json's shape: ids of the
                        tricky strings and files, hashes of the 1 MB documents. Only with
                        --smollm2-gguf; the vocabulary itself is never committed (the test runs
                        when SKV_SMOLLM2 names a tokenizer.json made from the GGUF, e.g. skv-import's)

Run by hand (never in CI) from the repository root:

    /opt/skvpy/bin/python scripts/make-tokenizer-families.py \\
        [--smollm2-gguf SmolLM2-135M-Instruct.Q4_1.gguf --smollm2-out /tmp/smollm2]

Needs tokenizers (0.23.3 made the committed files) and, for --smollm2-gguf, gguf.
"""
import argparse
import importlib.util
import json
import os

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

# the tricky strings, real files, 1 MB documents and golden() of the main fixture script
_spec = importlib.util.spec_from_file_location("mtf", os.path.join(ROOT, "scripts", "make-tokenizer-fixtures.py"))
mtf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mtf)

# SmolLM2's added tokens (ids 0..16 of its vocabulary), all special
SMOLLM2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
                    "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                    "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>",
                    "<empty_output>"]
SMOLLM2_PRE = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])

# Qwen2's split regex (transformers' models/qwen2/tokenization_qwen2.py)
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
# text that NFC changes: decomposed letters, reordering of marks, Hangul jamo, singletons,
# composition exclusions, and the same with added tokens around
NFC_TEXTS = ["e\u0301", "cafe\u0301 caf\u00e9", "a\u0323\u0302", "a\u0302\u0323", "e\u0301\u0301",
             "\u1100\u1161\u11a8\u1100\u1161", "\u212b\u2126\u212a", "\uf900\uf9ff", "\u0958\u0959 \u0915\u093c",
             "\u0344\u0340\u0341", "o\u0308\u0304 \u022b", "<|im_end|>e\u0301", "e<|im_end|>\u0301",
             "x\u0301y", "\u0301", "Vie\u0323\u0302t Nam", "\U0001d15e\U0001d160", "\u00c5\u0041\u030a",
             "\u1e9b\u0323", "n\u0303a\u0303o", "\u05d1\u05bc\u05b7"]


# strings for the pre-tokenizer variants: the tricky ones plus what the patterns below cut
EXTRA = ["a-b--c---d", "-lead and trail-", "x-y x", "xxaxx", "axxxb", "x", "xx", "a x b", "12-34 x56",
         "one  two   three", "  ", "-", "--", "x-", "-x", "1x2x3", "٣٤x٥", "the other", "hhhello there", "thhe whhhat", "h", "hh h", "with", "a\U00011DE0b\U00016FF4c"]


def texts_of(names):
    out = []
    for name in names:
        with open(os.path.join(FIX, "texts", name), encoding="utf-8", newline="") as f:
            out.append(f.read())
    return out


# ----------------------------------------------------------------------------------------------


def make_smollm2_shape(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = SMOLLM2_PRE
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=SMOLLM2_SPECIALS, show_progress=False)
    tok.train([os.path.join(ROOT, "model", "corpus", f) for f in mtf.CORPUS], trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    return Tokenizer.from_file(os.path.join(out, "tokenizer.json"))


def make_qwen2_shape(out):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_SPLIT), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], show_progress=False)
    tok.train([os.path.join(ROOT, "model", "corpus", f) for f in mtf.CORPUS], trainer)
    tok.add_tokens([AddedToken("cafe\u0301", normalized=True)])
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    return Tokenizer.from_file(os.path.join(out, "tokenizer.json"))


def nfc_golden():
    nfc, nfd = normalizers.NFC(), normalizers.NFD()
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF and c != 10]
    changed, compose = [], []
    for i in range(0, len(cps), 50000):
        part = cps[i:i + 50000]
        for c, a, d in zip(part, nfc.normalize_str("\n".join(map(chr, part))).split("\n"),
                           nfd.normalize_str("\n".join(map(chr, part))).split("\n")):
            if a != chr(c):
                changed.append([c, a])
            if d != chr(c) and (not 0xAC00 <= c <= 0xD7A3 or c % 97 == 0):
                compose.append([d, nfc.normalize_str(d)])
    return {"tokenizers": tokenizers.__version__, "changed": changed, "compose": compose}


def split_variants():
    """(name, pre_tokenizer) pairs over the gpt2 vocabulary."""
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    blr = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    out = []
    patterns = [("ws", Regex(r"\s+")), ("empty", Regex(r"h*")), ("dash", "-"), ("digit", Regex(r" ?\p{N}"))]
    for pname, pat in patterns:
        for beh in ("isolated", "removed", "merged_with_previous", "merged_with_next", "contiguous"):
            for inv in (False, True):
                sp = pre_tokenizers.Split(pat, beh, invert=inv)
                out.append((f"split-{pname}-{beh}{'-invert' if inv else ''}",
                            pre_tokenizers.Sequence([sp, bl if pname != "dash" else blr])))
    out.append(("digits-contiguous", pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False), blr])))
    out.append(("digits-individual-prefix", pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])))
    out.append(("bytelevel-noregex-prefix", pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)))
    out.append(("bytelevel-noregex", bl))
    with open(os.path.join(FIX, "llama3", "tokenizer.json"), encoding="utf-8") as f:
        llama3 = json.load(f)["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    out.append(("llama3-split-digits", pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(llama3), "isolated"), pre_tokenizers.Digits(individual_digits=True), bl])))
    return out


def splits_golden():
    texts = [t for t in mtf.TRICKY if len(t) <= 30] + EXTRA  # the long ones say nothing new here
    variants = []
    for name, pre in split_variants():
        tok = Tokenizer.from_file(os.path.join(FIX, "gpt2", "tokenizer.json"))
        tok.pre_tokenizer = pre
        variants.append({"name": name, "pre_tokenizer": json.loads(tok.to_str())["pre_tokenizer"],
                         "ids": [tok.encode(t, add_special_tokens=False).ids for t in texts]})
    return {"tokenizers": tokenizers.__version__, "texts": texts, "variants": variants}


def make_ignore_merges(out):
    """Byte-level BPE whose words are entries their merges do not build: for "abc", the merges are
    a+b (rank 0), b+c (1) and a+bc (2); BPE applies a+b first and is left with "ab", "c" (no
    merge), while ignore_merges finds "abc" in the vocabulary at once."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = []

    def add(a, b):
        for t in (a, b):
            if t not in vocab:
                raise SystemExit(f"merge part {t!r} missing")
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
        if (a, b) not in merges:
            merges.append((a, b))

    for w in ("abc", "Ġabc", "lighthouse", "Ġkeeper", "ĠÃ©tÃ©"):  # "ĠÃ©tÃ©" is " été" in ByteLevel spelling
        chars = list(w)
        # left-to-right pairs first (they win), then right-nested ones that build the word
        add(chars[0], chars[1])
        for i in range(len(chars) - 2, 0, -1):
            add(chars[i], "".join(chars[i + 1:]))
        add(chars[0], "".join(chars[1:]))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    d = json.loads(tok.to_str())
    d["model"]["ignore_merges"] = False
    nim = Tokenizer.from_str(json.dumps(d))
    texts = ["abc", " abc", "abc abc", "xabc", "abcabc", "lighthouse", "the lighthouse keeper", " keeper",
             "keeper", "ab", "bc", " été", "l'été", "lighthouses", "abc\nabc", ""]
    cases = []
    for t in texts:
        ids, nids = tok.encode(t).ids, nim.encode(t).ids
        cases.append({"text": t, "ids": ids, "ids_nim": nids})
    changed = sum(c["ids"] != c["ids_nim"] for c in cases)
    if changed < 8:
        raise SystemExit(f"ignore_merges changes only {changed} cases")
    return {"tokenizers": tokenizers.__version__, "cases": cases}


# ----------------------------------------------------------------------------------------------


def smollm2_from_gguf(path, out):
    """SmolLM2's tokenizer.json as published (HuggingFaceTB/SmolLM2-135M-Instruct), from the GGUF's
    tokenizer.ggml.* (tokens are in the ByteLevel spelling, merges "a b", control tokens special)."""
    from gguf import GGUFReader

    r = GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    if r.fields["tokenizer.ggml.pre"].contents() != "smollm":
        raise SystemExit(f"{path}: tokenizer.ggml.pre is not smollm")
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = SMOLLM2_PRE
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3])
    if [t for t, ty in zip(tokens, types) if ty == 3] != SMOLLM2_SPECIALS:
        raise SystemExit(f"{path}: control tokens are not SmolLM2's 17 specials")
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    return Tokenizer.from_file(os.path.join(out, "tokenizer.json"))


def dump(name, obj):
    mtf.dump(os.path.join(FIX, name), obj)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smollm2-gguf", help="SmolLM2-135M-Instruct GGUF: also write golden-smollm2.json")
    ap.add_argument("--smollm2-out", default="/tmp/smollm2-tokenizer", help="where its tokenizer.json goes")
    a = ap.parse_args()
    texts = sorted(os.listdir(os.path.join(FIX, "texts")))

    shape = make_smollm2_shape(os.path.join(FIX, "smollm2-shape"))
    dump("golden-smollm2-shape.json", mtf.golden(shape, texts, os.path.join(FIX, "smollm2-shape")))
    dump("golden-splits.json", splits_golden())
    qwen = make_qwen2_shape(os.path.join(FIX, "qwen2-shape"))
    g = mtf.golden(qwen, texts, os.path.join(FIX, "qwen2-shape"))
    for t in NFC_TEXTS:
        ids, bos, plain = mtf.encodings(qwen, t)
        g["cases"].append({"text": t, "ids": ids, "ids_bos": bos, "ids_text": plain})
    dump("golden-qwen2-shape.json", g)
    dump("golden-nfc.json", nfc_golden())
    dump("golden-ignore-merges.json", make_ignore_merges(os.path.join(FIX, "ignore-merges")))
    if a.smollm2_gguf:
        real = smollm2_from_gguf(a.smollm2_gguf, a.smollm2_out)
        g = mtf.golden(real, texts, os.path.join(FIX, "smollm2-shape"))
        g["n_vocab"] = real.get_vocab_size()
        dump("golden-smollm2.json", g)
        print(f"{a.smollm2_out}/tokenizer.json: SmolLM2's tokenizer, {real.get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
