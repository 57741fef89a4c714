#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/: golden encodings, decodings and chat renders from Hugging Face
`tokenizers` and `transformers`, for tests/test-tokenizer.c and tests/test-chat.c.

  llama3/tokenizer.json, tokenizer_config.json   what `skv-mkmodel --preset tiny` writes (1024
                        ordinary tokens + 256 specials); checked here to load in tokenizers and
                        transformers and to be exactly what tokenizers itself would save
  gpt2/tokenizer.json   a second vocabulary, trained by tokenizers' own BpeTrainer on the same
                        corpus: GPT-2's shape (ByteLevel with its regex, no ignore_merges), but
                        with add_prefix_space, and added tokens of every kind (special or not,
                        normalized or not, lstrip/rstrip, single_word)
  texts/*.txt           real files (a C source, a Markdown table, multilingual text, CRLF text)
  golden-llama3.json, golden-gpt2.json
                        for every tricky string and file: ids (specials matched), ids with the
                        post-processor, ids with specials as text (encode_special_tokens), and
                        for llama3 the ids with ignore_merges off; decodings of random id lists
                        (with and without skip_special_tokens); FNV-1a hashes of the ids of 1 MB
                        documents without spaces (generated from a seed on both sides)
  chat.json             apply_chat_template renders (text and ids) of conversations with Meta's
                        Llama-3.1 template and the plain Llama-3 template, and the conversations
                        transformers refuses

Run by hand (never in CI) from the repository root after building skv-mkmodel:

    meson setup build-tok && ninja -C build-tok tools/skv-mkmodel
    /opt/skvpy/bin/python scripts/make-tokenizer-fixtures.py build-tok/tools/skv-mkmodel

Needs tokenizers and transformers (tested with tokenizers 0.23.3, transformers 5.23.0).
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import tokenizers
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CORPUS = ["prose-en.txt", "world.txt", "code.txt", "swiftkv-src.txt", "apache-2.0.txt", "gpl-3.txt"]
LLAMA31 = os.path.join(ROOT, "model", "templates", "llama-3.1.jinja")
LLAMA3 = os.path.join(ROOT, "model", "templates", "llama-3.jinja")

# ----------------------------------------------------------------------------------------------
# Inputs

TRICKY = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \r\n ", "a\r\nb", "a\rb", "a\n\n\nb",
    "Hello world", "Hello  world", "Hello   world", " leading", "trailing ", "  both  ", "x \n y",
    "line one\nline two\n", "tab\tseparated\tvalues", "mixed \t \n whitespace\u3000here",
    # contractions in every case
    "I'm", "I'M", "don't", "DON'T", "Don'T", "we're", "WE'RE", "you've", "YOU'VE", "she'll", "SHE'LL",
    "he'd", "HE'D", "it's", "IT'S", "'s", "'S", "''s", "x's'S't", "o'clock", "rock'n'roll",
    "The dog's bone's gone", "'ſ and 'K", "l'été", "‘curly’ quotes’s",
    # numbers
    "1", "12", "123", "1234", "12345", "1234567890", "12345678901234567890123", "3.14159", "1,000,000",
    "-42", "+7", "1e-5", "0xFF", "2024-11-23", "12:30:45", "v1.2.3", "$19.99", "٣٤٥٦", "१२३४५", "①②③",
    "Ⅻ", "½", "x²", "一二三",
    # scripts
    "Привет, мир!", "Καλημέρα κόσμε", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีชาวโลก",
    "こんにちは世界", "你好，世界！", "안녕하세요 세계", "Xin chào thế giới", "Straße und Größe",
    "Ελληνικά123abc", "abcПривет", "日本語English混合テキスト", "ﬁﬂ ligatures", "ＡＢＣ１２３",
    # letters and digits newer than PCRE2's Unicode (Oniguruma knows them)
    "\U00011F04\U00011F05 kawi", "\U00010D50\U00010D51 garay", "\U0001E4D0 nag mundari", "\U00031350\U00031351",
    "\U0002EBF0 cjk-i", "\U00010D40\U00010D41", "a\U0001E5F1b", "x\u180ey", "x\u200by", "x\u00a0y",
    "x\u2028y", "x\u0085y", "x\x1cy",
    # emoji
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️‍🔥", "🇫🇷🇩🇪", "#️⃣", "emoji 😀 in text", "a👨‍👩‍👧‍👦b",
    "🧑🏿‍🚀🧑🏿‍🚀🧑🏿‍🚀",
    # control characters
    "\x00", "a\x00b", "\x01\x02\x03", "\x7f", "\x1b[31mred\x1b[0m", "\ufeffBOM", "\ufffd", "\u200d",
    "\u202eRTL override", "combining e\u0301\u0301",
    # punctuation and code
    "Hello, world!", "...", "!!!???", "a.b.c", "foo_bar_baz", "snake_case and camelCase",
    "if (x == 1) { return y; }", "def f(x):\n    return x ** 2\n", "<div class=\"a\">b</div>",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\System32",
    "/* comment */", "#include <stdio.h>", "    indented code", "\t\tdouble tab",
    "====", "----\n----", "***bold***", "a\n\n\n\n\nb",
    # special-token strings
    "<|begin_of_text|>", "<|begin_of_text|>Hello", "Hello<|eot_id|>", "<|eot_id|><|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<|begin_of_text", "<|eot_id",
    "<|reserved_special_token_5|>", "<|reserved_special_token_247|>", "x<|python_tag|>y",
    "<|<|eot_id|>|>", "<|endoftext|>", "a<|endoftext|>b", "<custom>", "x<custom>y", " hello world",
    "say hello world now", "a[LS]b", "a  [LS]  b", "ab", " ab ", "cab", "ab.", "abc", "<sp>", "x<sp>",
    # long pre-tokens (the heap path) and repetition
    "a" * 100, "a" * 1000, "ab" * 500, "abc" * 300, "Supercalifragilisticexpialidocious" * 10,
    " " * 100, "\n" * 100, " \n" * 50, "." * 200, "-" * 300 + "\n", "1" * 100, "😀" * 60,
    "日本語" * 100, "x" * 49, "y" * 47, "w" * 48,
]


def lcg_text(seed, alphabet, nbytes):
    """Deterministic text: alphabet[(x >> 33) % len] with a 64-bit LCG; mirrored in the C test."""
    x = seed & (2**64 - 1)
    out, n = [], 0
    while n < nbytes:
        x = (x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        ch = alphabet[(x >> 33) % len(alphabet)]
        out.append(ch)
        n += len(ch.encode())
    return "".join(out)


def fnv_ids(ids):
    h = 0xcbf29ce484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)
    return f"{h:016x}"


LONG = [  # 1 MB documents with no whitespace: one pre-token each, or long runs of short ones
    dict(name="letters", seed=1, alphabet=list("abcdefghijklmnopqrstuvwxyzABCDE")),
    dict(name="two-letters", seed=2, alphabet=["a", "b"]),
    dict(name="cjk", seed=3, alphabet=list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年")),
    dict(name="digits", seed=4, alphabet=list("0123456789")),
    dict(name="punct", seed=5, alphabet=list("!\"#$%&()*+,-./:;<=>?@[]^_`{|}~")),
    dict(name="emoji", seed=6, alphabet=["😀", "👍", "🏽", "\u200d", "🔥", "❤", "\ufe0f"]),
    dict(name="mixed", seed=7, alphabet=list("abcXYZ0123_.-'é中😀")),
]
LONG_BYTES = 1 << 20


def random_ids(rng, tok, n_ids):
    """Id lists that split characters across tokens and mix in specials and unknown ids."""
    lists = []
    for _ in range(60):
        lists.append([rng.randrange(n_ids + 3) for _ in range(rng.randint(0, 24))])
    # byte tokens 128..255 and their neighbours: partial UTF-8 sequences
    for _ in range(40):
        lists.append([rng.choice([rng.randrange(256), rng.randrange(n_ids)]) for _ in range(rng.randint(1, 12))])
    return lists


# ----------------------------------------------------------------------------------------------
# Vocabularies


def make_llama3(mkmodel, out):
    with tempfile.TemporaryDirectory() as d:
        m = os.path.join(d, "m")
        subprocess.run([mkmodel, "--preset", "tiny", m], check=True, stdout=subprocess.DEVNULL)
        os.makedirs(out, exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(m, f), out)
    path = os.path.join(out, "tokenizer.json")
    tok = Tokenizer.from_file(path)
    with open(path, encoding="utf-8") as f:
        if tok.to_str(pretty=True) != f.read():
            sys.exit(f"{path}: tokenizers would save this tokenizer differently")
    at = transformers.AutoTokenizer.from_pretrained(out)
    probe = "Hello <|eot_id|> world 😀"
    if at(probe).input_ids != tok.encode(probe).ids:
        sys.exit(f"{out}: transformers and tokenizers disagree")
    return tok


def make_gpt2(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train([os.path.join(ROOT, "model", "corpus", f) for f in CORPUS], trainer)
    tok.add_tokens(["<custom>", " hello world"])
    tok.add_tokens([AddedToken("[LS]", lstrip=True, rstrip=True), AddedToken("ab", single_word=True)])
    tok.add_special_tokens([AddedToken("<sp>", normalized=True)])
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    return Tokenizer.from_file(os.path.join(out, "tokenizer.json"))


# ----------------------------------------------------------------------------------------------
# Goldens


def encodings(tok, text):
    tok.encode_special_tokens = False
    ids = tok.encode(text, add_special_tokens=False).ids
    bos = tok.encode(text, add_special_tokens=True).ids
    tok.encode_special_tokens = True
    plain = tok.encode(text, add_special_tokens=False).ids
    tok.encode_special_tokens = False
    return ids, bos, plain


def golden(tok, texts, out, extra=None):
    rng = random.Random(20251123)
    cases = []
    for t in TRICKY:
        ids, bos, plain = encodings(tok, t)
        c = {"text": t, "ids": ids, "ids_bos": bos, "ids_text": plain}
        if extra:
            c.update(extra(t))
        cases.append(c)
    files = []
    for name in texts:
        with open(os.path.join(out, "..", "texts", name), encoding="utf-8", newline="") as f:
            t = f.read()
        ids, bos, plain = encodings(tok, t)
        c = {"file": name, "ids": ids}
        if bos != ids:
            c["ids_bos"] = bos
        if plain != ids:
            c["ids_text"] = plain
        if extra:
            c.update(extra(t))
        files.append(c)
    dec = []
    for ids in random_ids(rng, tok, tok.get_vocab_size()):
        dec.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                    "text_skip": tok.decode(ids, skip_special_tokens=True)})
    long = []
    for spec in LONG:
        t = lcg_text(spec["seed"], spec["alphabet"], LONG_BYTES)
        ids = tok.encode(t, add_special_tokens=False).ids
        e = dict(spec, bytes=LONG_BYTES, n_ids=len(ids), fnv=fnv_ids(ids))
        if extra:
            x = extra(t)
            e["n_ids_nim"], e["fnv_nim"] = len(x["ids_nim"]), fnv_ids(x["ids_nim"])
        long.append(e)
    return {"tokenizers": tokenizers.__version__, "cases": cases, "files": files, "decode": dec, "long": long}


def no_ignore_merges(tok):
    d = json.loads(tok.to_str())
    d["model"]["ignore_merges"] = False
    nim = Tokenizer.from_str(json.dumps(d))
    return lambda t: {"ids_nim": nim.encode(t, add_special_tokens=False).ids}


# ----------------------------------------------------------------------------------------------
# Chat

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another one?"}],
    [{"role": "system", "content": "  \n\tSpaces around the system prompt.\n\n  "},
     {"role": "user", "content": "\n\n   leading and trailing   \n"},
     {"role": "assistant", "content": "\u3000ideographic space\u3000"},
     {"role": "user", "content": "\x1c\x1d\x1e\x1fpython strips these\x85\xa0\u2028"}],
    [{"role": "user", "content": "\u200bzero width is not space\u200b"}, {"role": "assistant", "content": "\u180e"}],
    [{"role": "user", "content": "Ünïcödé: 日本語, Ελληνικά, עברית, العربية, 😀👨‍👩‍👧‍👦🇫🇷"},
     {"role": "assistant", "content": "Réponse : « oui » 👍🏽"}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": "   "}, {"role": "user", "content": "\n"}],
    [{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "Fine."}],
    [{"role": "system", "content": "Only a system message."}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "user", "content": "c"}],
    [{"role": "system", "content": "first"}, {"role": "user", "content": "q"},
     {"role": "system", "content": "a second system message"}, {"role": "user", "content": "q2"}],
    [{"role": "developer", "content": "a custom role"}, {"role": "user", "content": "hi"}],
    [{"role": "user", "content": "Can you read <|eot_id|> and <|begin_of_text|> in my text?"}],
    [{"role": "user", "content": "What's the weather?"},
     {"role": "ipython", "content": "{\"temp\": 21, \"unit\": \"C\"}\n\tdone\\ \x01"},
     {"role": "tool", "content": "  plain result  "}],
    [{"role": "user", "content": "line1\r\nline2\r\n"}],
    [{"role": "system", "content": "x" * 500}, {"role": "user", "content": "long\n" * 40}],
    [],
]


def chat_fixtures(llama3_dir):
    out = []
    templates = {"llama-3.1": open(LLAMA31, encoding="utf-8").read(), "llama-3": open(LLAMA3, encoding="utf-8").read()}
    for name, text in templates.items():
        with tempfile.TemporaryDirectory() as d:
            for f in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(llama3_dir, f), d)
            with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            cfg["chat_template"] = text
            with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(cfg, f, ensure_ascii=False, indent=2)
            at = transformers.AutoTokenizer.from_pretrained(d)
            for msgs in CONVERSATIONS:
                for gen in (False, True):
                    c = {"template": name, "messages": msgs, "add_generation_prompt": gen}
                    try:
                        c["text"] = at.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
                        ids = at.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen)
                        if isinstance(ids, dict) or hasattr(ids, "keys"):
                            ids = ids["input_ids"]
                        c["ids"] = list(ids)
                    except Exception as e:  # transformers refuses: so must we
                        c["error"] = type(e).__name__
                    out.append(c)
    return {"transformers": transformers.__version__, "cases": out}


# ----------------------------------------------------------------------------------------------


def write_texts(out):
    os.makedirs(out, exist_ok=True)
    src = subprocess.run(["git", "-C", ROOT, "show", "HEAD:worker/engine.c"], check=True, capture_output=True).stdout
    with open(os.path.join(out, "engine.c.txt"), "wb") as f:
        f.write(src)
    shutil.copy(os.path.join(ROOT, "model", "corpus", "README.md"), os.path.join(out, "corpus-readme.md.txt"))
    shutil.copy(os.path.join(ROOT, "model", "corpus", "world.txt"), os.path.join(out, "world.txt"))
    with open(os.path.join(ROOT, "model", "corpus", "prose-en.txt"), encoding="utf-8") as f:
        prose = f.read()[:6000]
    with open(os.path.join(out, "crlf.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(prose.replace("\n", "\r\n"))
    return sorted(os.listdir(out))


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mkmodel", help="path of the built skv-mkmodel")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer"))
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    texts = write_texts(os.path.join(out, "texts"))
    llama3 = make_llama3(os.path.abspath(a.mkmodel), os.path.join(out, "llama3"))
    gpt2 = make_gpt2(os.path.join(out, "gpt2"))
    dump(os.path.join(out, "golden-llama3.json"), golden(llama3, texts, os.path.join(out, "llama3"),
                                                         no_ignore_merges(llama3)))
    dump(os.path.join(out, "golden-gpt2.json"), golden(gpt2, texts, os.path.join(out, "gpt2")))
    dump(os.path.join(out, "chat.json"), chat_fixtures(os.path.join(out, "llama3")))
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"{out}: {total / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
