#!/usr/bin/env python3
"""make-smollm-golden.py: golden logits for SmolLM2-135M-Instruct, from an fp64 reference that
shares nothing with skv-import or the engine (tests/test-smollm.c compares skv-run with them).

    /opt/skvpy/bin/python scripts/make-smollm-golden.py [--tokenizer-only] [--imported DIR] GGUF [OUTDIR]
    (OUTDIR default tests/fixtures/smollm)

The reference reads the GGUF with gguf-py (llama.cpp's own reader and dequantization) and runs
the Llama forward in numpy float64 in llama.cpp's layout: the q/k weights stay as the file
stores them (each head's rows interleaved by the converter) and rotary embedding turns adjacent
pairs (2i, 2i+1), as llama.cpp does for this layout. skv-import's un-permuting to Hugging Face's
layout (rotate first half against second half) is then checked, not reused. Prompt ids come
from a tokenizer built here with Hugging Face tokenizers from the GGUF's vocabulary and merges.

Also writes tokenizer.txt ("smollm<TAB>text-hex<TAB>ids" a line): tricky texts encoded by the tokenizer built
here. It is checked against transformers' own GGUF tokenizer builder
(transformers.integrations.gguf, fed gguf-py's metadata since its reader needs torch): equal ids
on every text without digits; transformers has no rule for "smollm" and keeps runs of digits
together, where SmolLM2's tokenizer and llama.cpp split every digit. With --imported DIR (an
skv-import of the same GGUF) DIR/tokenizer.json, loaded by Hugging Face tokenizers, must give the
same ids on every text. --tokenizer-only skips the (2 minute) forward.

Writes manifest.txt ("case NAME", "prompt IDS", "ids IDS", "golden FILE", "stats ROW SUM SUMSQ MAX")
and NAME.npy: float32 [generated, 2*M] holding, per generated token's logits row, M indices
(every 16th id, then the row's 32 largest) and the logits at them. The full row is summarised by
its sum, sum of squares and largest |value| (fp64) in the manifest.
"""
import os
import sys

import gguf
import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, decoders

ARGS = [a for a in sys.argv[1:]]
TOKENIZER_ONLY = "--tokenizer-only" in ARGS
IMPORTED = None
if "--imported" in ARGS:
    IMPORTED = ARGS[ARGS.index("--imported") + 1]
    del ARGS[ARGS.index("--imported"):ARGS.index("--imported") + 2]
ARGS = [a for a in ARGS if a != "--tokenizer-only"]
GGUF = ARGS[0]
OUT = ARGS[1] if len(ARGS) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "smollm")
N_GEN = 8
STRIDE = 16
TOPK = 32

r = gguf.GGUFReader(GGUF)
kv = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.ggml.")}
assert kv["general.architecture"] == "llama"
L = kv["llama.block_count"]
H = kv["llama.embedding_length"]
NH = kv["llama.attention.head_count"]
NKV = kv["llama.attention.head_count_kv"]
D = H // NH
EPS = kv["llama.attention.layer_norm_rms_epsilon"]
THETA = kv["llama.rope.freq_base"]
W = {} if TOKENIZER_ONLY else {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
                               for t in r.tensors}
EMB = W.get("token_embd.weight")
OUTW = W.get("output.weight", EMB)


def rms(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * w


def rope_adjacent(x, pos):
    """x [T, heads, D]: pairs (2i, 2i+1) turned by pos * THETA^(-2i/D) (llama.cpp's normal mode)."""
    inv = THETA ** (-np.arange(0, D, 2, dtype=np.float64) / D)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def forward(ids):
    """Logits [T, vocab] of the whole sequence (no cache: the reference stays simple)."""
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    x = EMB[ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(L):
        p = f"blk.{i}."
        h = rms(x, W[p + "attn_norm.weight"])
        q = (h @ W[p + "attn_q.weight"].T).reshape(T, NH, D)
        k = (h @ W[p + "attn_k.weight"].T).reshape(T, NKV, D)
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, NKV, D)
        q, k = rope_adjacent(q, pos), rope_adjacent(k, pos)
        o = np.empty((T, NH, D))
        for hh in range(NH):
            g = hh // (NH // NKV)
            s = q[:, hh, :] @ k[:, g, :].T / np.sqrt(D) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            o[:, hh, :] = (s / s.sum(axis=-1, keepdims=True)) @ v[:, g, :]
        x = x + o.reshape(T, H) @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"])
        gt = h @ W[p + "ffn_gate.weight"].T
        x = x + ((gt / (1 + np.exp(-gt))) * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
    return rms(x, W["output_norm.weight"]) @ OUTW.T


def tokenizer():
    f = r.fields
    toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode().split(" ") for i in f["tokenizer.ggml.merges"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    assert bytes(f["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=[tuple(m) for m in merges]))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([t for t, ty in zip(toks, types) if ty == 3])
    return tk


def chat(user):
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = [
    ("capital", chat("What is the capital of France?")),
    ("summary", chat("Summarize in one sentence: Revenue grew 12% to $4.5 million in the third quarter, "
                     "driven by new customers in Europe, while costs fell 3%.")),
    ("raw", "The history of the Roman Empire begins"),
]


TEXTS = [
    "Hello world! hello World?",
    "In 2024 the report said 1234567 units were sold, up 12.5% from 1,097,000.",
    "  leading spaces\n\n\ttabs and\r\nnewlines   ",
    "It's what they'd've said. IT'S LOUD",
    "Ünïcödé: naïve café — 東京 🚀 emoji",
    "specials as text: <|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "def f(x):\n    return x**2  # square",
    "<repo_name>swiftkv<file_sep>main.c",
]


def check_tokenizers(tk):
    """The texts' ids: against transformers' GGUF builder, and the imported tokenizer.json."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer
    f = r.fields
    d = {"tokenizer_type": "gpt2", "pre_tokenizer_type": "smollm",
         "tokens": [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data],
         "merges": [bytes(f["tokenizer.ggml.merges"].parts[i]).decode() for i in f["tokenizer.ggml.merges"].data],
         "token_type": [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]}
    hf, _ = convert_gguf_tokenizer("llama", d)
    ours = Tokenizer.from_file(os.path.join(IMPORTED, "tokenizer.json")) if IMPORTED else None
    lines = []
    for t in TEXTS:
        ids = tk.encode(t).ids
        assert tk.decode(ids, skip_special_tokens=False) == t
        if not any(c.isdigit() for c in t):
            assert hf.encode(t).ids == ids, (t, hf.encode(t).ids, ids)
        if ours:
            assert ours.encode(t).ids == ids, (t, ours.encode(t).ids, ids)
        lines.append(f"smollm\t{t.encode().hex()}\t{','.join(map(str, ids))}")
    with open(os.path.join(OUT, "tokenizer.txt"), "w") as out:
        out.write("\n".join(lines) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    tk = tokenizer()
    check_tokenizers(tk)
    if TOKENIZER_ONLY:
        return
    lines = [f"# made by scripts/make-smollm-golden.py from {os.path.basename(GGUF)}: {N_GEN} greedy tokens per case"]
    for name, text in PROMPTS:
        ids = tk.encode(text).ids
        prompt = list(ids)
        rows = []
        for _ in range(N_GEN):
            logits = forward(np.array(ids))[-1]
            top2 = np.sort(logits)[-2:]
            print(f"{name}: next {int(np.argmax(logits))} margin {top2[1] - top2[0]:.4f}", file=sys.stderr)
            rows.append(logits)
            ids.append(int(np.argmax(logits)))
        gen = ids[len(prompt):]
        print(f"{name}: {tk.decode(gen)!r}", file=sys.stderr)
        m = len(range(0, len(rows[0]), STRIDE)) + TOPK
        out = np.zeros((N_GEN, 2 * m), dtype=np.float32)
        lines += [f"case {name}", "prompt " + ",".join(map(str, prompt)), "ids " + ",".join(map(str, gen)),
                  f"golden {name}.npy"]
        for i, row in enumerate(rows):
            idx = np.concatenate([np.arange(0, len(row), STRIDE), np.argsort(row)[-TOPK:]])
            out[i, :m] = idx
            out[i, m:] = row[idx]
            lines.append(f"stats {i} {row.sum():.17g} {(row * row).sum():.17g} {np.abs(row).max():.17g}")
        np.save(os.path.join(OUT, name + ".npy"), out)
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
