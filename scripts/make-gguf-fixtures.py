#!/usr/bin/env python3
"""make-gguf-fixtures.py: the GGUF fixtures of tests/test-gguf.c, made with gguf-py (the `gguf`
package, llama.cpp's own Python reader/writer).

    /opt/skvpy/bin/python scripts/make-gguf-fixtures.py [OUTDIR]   (default tests/fixtures/gguf)

Writes:
  dequant.gguf      for every type skv-import dequantizes, a tensor "q.TYPE" of random blocks and
                    "want.TYPE" (F32), gguf-py's own dequantization of it (gguf.quants.dequantize).
                    Q4_0..Q8_0 and BF16 blocks come from gguf-py's quantizer on random floats and
                    from random raw bytes (with finite scales); K-quants (no quantizer in gguf-py)
                    from random raw bytes with finite scales.
  tiny-llama.gguf   a 2-layer llama (hidden 64, 4 heads, 2 KV heads) in the layout llama.cpp's
                    converter writes: q/k rows permuted, tied embeddings (no output.weight), a
                    mix of types, a byte-level BPE tokenizer (pre "llama-bpe") with control tokens,
                    a chat template. tiny-llama.want.safetensors holds the f32 tensors skv-import
                    must write (the HF layout, q/k un-permuted: the weights before permuting),
                    dequantized by gguf-py.
  tiny-untied.gguf  the same with a separate output.weight (F16) and pre "gpt2".
  tiny-smollm.gguf  tiny-llama with pre "smollm" (digits split one by one, then GPT-2's split).
  tiny-llama31.gguf tiny-llama with Llama-3.1 rope scaling, stored as the converter does
                    (rope_freqs.weight: one divisor per frequency), and add_bos_token set.
  bad-*.gguf        files skv-import must refuse: another architecture, an unsupported type
                    (Q2_K), an unknown pre-tokenizer, a k projection of the wrong shape.
  tokenizer.txt     texts and the ids Hugging Face tokenizers gives them with a tokenizer built
                    here from the same vocabulary, merges and the pre-tokenizer the name means
                    (independent of skv-import's tokenizer.json); one "pre<TAB>text-hex<TAB>ids" a
                    line.
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from safetensors.numpy import save_file
from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gguf")
rng = np.random.default_rng(20261205)


def raw_blocks(qtype, nblocks):
    """Random raw blocks whose f16 scale fields are finite (random bytes would give inf/NaN)."""
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(nblocks, ts), dtype=np.uint8)

    def f16(off):
        v = rng.normal(0, 0.05, size=nblocks).astype(np.float16)
        b[:, off:off + 2] = v.view(np.uint8).reshape(nblocks, 2)

    if qtype in (QT.Q4_0, QT.Q5_0, QT.Q8_0):
        f16(0)
    elif qtype in (QT.Q4_1, QT.Q5_1, QT.Q4_K, QT.Q5_K):
        f16(0)
        f16(2)
    elif qtype == QT.Q6_K:
        f16(208)
    elif qtype == QT.F16:
        b = rng.normal(0, 1, size=(nblocks, 1)).astype(np.float16).view(np.uint8)
    elif qtype == QT.BF16:
        b = (rng.normal(0, 1, size=(nblocks, 1)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    elif qtype == QT.F32:
        b = rng.normal(0, 1, size=(nblocks, 1)).astype(np.float32).view(np.uint8)
    return b


def blocks_for(qtype, rows, cols):
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    half = rows // 2
    raw = raw_blocks(qtype, rows * cols // bs).reshape(rows, cols // bs * ts)
    if qtype not in (QT.F32, QT.F16, QT.Q4_K, QT.Q5_K, QT.Q6_K):  # gguf-py quantizes these: half the rows
        q = gguf.quants.quantize(rng.normal(0, 1, size=(half, cols)).astype(np.float32), qtype)
        raw[:half] = q.reshape(half, -1)
    return raw


def dequant_fixture():
    w = gguf.GGUFWriter(os.path.join(OUT, "dequant.gguf"), arch="test")
    types = [QT.F32, QT.F16, QT.BF16, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.Q4_K, QT.Q5_K, QT.Q6_K]
    for t in types:
        bs, _ = gguf.GGML_QUANT_SIZES[t]
        rows, cols = (16, 512) if bs == 256 else (32, 128) if bs == 32 else (8, 64)
        raw = blocks_for(t, rows, cols)
        want = gguf.quants.dequantize(raw, t).astype(np.float32)
        assert want.shape == (rows, cols) and np.all(np.isfinite(want)), t
        w.add_tensor("q." + t.name, raw, raw_dtype=t)
        w.add_tensor("want." + t.name, want)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- a tiny llama ----

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


CORPUS = ("The quick brown fox jumps over the lazy dog. In 2024 the report said 1234567 units were sold, "
          "up 12.5% from last year's 1,097,000. Hello world! hello World? It's what they'd've said. "
          "summary: the the the and and of of to to in in is is that that ") * 3

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_bpe(n_merges):
    """A few merges learned on CORPUS (split like GPT-2), in byte-level spelling."""
    b2u = bytes_to_unicode()
    import re
    words = re.findall(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+", CORPUS)
    seqs = [[b2u[c] for c in wd.encode()] for wd in words]
    merges = []
    vocab = [b2u[b] for b in range(256)]
    for _ in range(n_merges):
        counts = {}
        for s in seqs:
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        vocab.append(a + b)
        for s in seqs:
            i = 0
            while i < len(s) - 1:
                if s[i] == a and s[i + 1] == b:
                    s[i:i + 2] = [a + b]
                i += 1
    return vocab, merges


def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf layout for q/k: each head's two rotary halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


CHAT = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def llama3_rope_factors(theta, dim, factor, low, high, orig):
    """What convert_hf_to_gguf stores as rope_freqs.weight for Llama-3.1 rope scaling."""
    freqs = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    out = []
    for f in freqs:
        wavelen = 2 * np.pi / f
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            sm = (orig / wavelen - low) / (high - low)
            out.append(1 / ((1 - sm) / factor + sm))
    return np.array(out, dtype=np.float32)


def tiny(path, want_path=None, *, arch="llama", tied=True, pre="llama-bpe", types=None, bad_k=False, keep=None,
         rope=None, add_bos=False):
    H, I, NH, NKV, D, L = 64, 160, 4, 2, 16, 2
    base, merges = train_bpe(100)
    tokens = SPECIALS + base
    V = len(tokens)
    types = types or {}
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name("tiny test llama")
    w.add_block_count(L)
    w.add_context_length(4096)
    w.add_embedding_length(H)
    w.add_feed_forward_length(I)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(D)
    w.add_vocab_size(V)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3] * len(SPECIALS) + [1] * len(base))
    w.add_token_merges([a + " " + b for a, b in merges])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(add_bos)
    w.add_chat_template(CHAT)
    want = {}

    def put(gname, hfname, a, default=QT.F32, perm=None):
        qt = types.get(gname.split(".")[-2] if gname.startswith("blk.") else gname, default)
        a = a.astype(np.float32)
        if perm:
            a_file = permute(a, perm)
        else:
            a_file = a
        if qt == QT.F32:
            raw, back = a_file, a_file
            w.add_tensor(gname, raw)
        else:
            raw = gguf.quants.quantize(a_file, qt)
            back = gguf.quants.dequantize(raw, qt).astype(np.float32)
            w.add_tensor(gname, raw, raw_dtype=qt)
        if perm:  # what skv-import must give: the file's values, un-permuted
            back = back.reshape(perm, back.shape[0] // perm // 2, 2, *back.shape[1:]).swapaxes(1, 2).reshape(back.shape)
        want[hfname] = np.ascontiguousarray(back, dtype=np.float32)

    n = lambda *s: rng.normal(0, 1, size=s) / np.sqrt(s[-1])
    put("token_embd.weight", "model.embed_tokens.weight", rng.normal(0, 0.05, size=(V, H)), QT.Q8_0)
    for i in range(L):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", 1 + 0.1 * rng.normal(size=H))
        put(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", n(NH * D, H), QT.Q4_1, perm=NH)
        kshape = (NKV * D + (32 if bad_k else 0), H)
        put(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", n(*kshape), QT.Q5_0, perm=NKV)
        put(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", n(NKV * D, H), QT.Q8_0)
        put(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", 0.5 * n(H, NH * D), QT.Q4_0)
        put(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", 1 + 0.1 * rng.normal(size=H))
        put(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", n(I, H), QT.Q5_1)
        put(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", n(I, H), QT.Q8_0)
        put(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", 0.5 * n(H, I), QT.Q4_1)
    put("output_norm.weight", "model.norm.weight", 1 + 0.1 * rng.normal(size=H))
    if rope:
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(100000.0, D, *rope))
    if not tied:
        put("output.weight", "lm_head.weight", n(V, H), QT.F16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if want_path:
        save_file({k: v for k, v in want.items() if keep is None or k in keep}, want_path)
    return tokens, merges


SPLITS = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}

TEXTS = [
    "Hello world! hello World?",
    "In 2024 the report said 1234567 units were sold, up 12.5% from 1,097,000.",
    "  leading spaces\n\n\ttabs and\r\nnewlines   ",
    "It's what they'd've said. IT'S LOUD",
    "Ünïcödé: naïve café — 東京 🚀 emoji",
    "specials as text: <|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "",
    "summary: the the the and and of of",
]


def reference_tokenizer(tokens, merges, pre):
    """The tokenizer the GGUF describes, built here from its parts (not from skv-import's output)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    if pre == "gpt2":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre == "smollm":
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(SPLITS[pre]), behavior="isolated"),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(SPECIALS)
    return tk


def fuzz_corpus():
    """Small seeds for tests/fuzz/fuzz-gguf: every metadata value type, a few tensor types."""
    d = os.path.join(os.path.dirname(__file__), "..", "tests", "fuzz", "corpus", "fuzz-gguf")
    os.makedirs(d, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(d, "kinds.gguf"), arch="llama")
    w.add_uint8("a.u8", 7)
    w.add_int8("a.i8", -7)
    w.add_uint16("a.u16", 700)
    w.add_int16("a.i16", -700)
    w.add_uint32("a.u32", 70000)
    w.add_int32("a.i32", -70000)
    w.add_float32("a.f32", 0.5)
    w.add_bool("a.bool", True)
    w.add_string("a.str", "text")
    w.add_uint64("a.u64", 1 << 40)
    w.add_int64("a.i64", -(1 << 40))
    w.add_float64("a.f64", 0.25)
    w.add_array("a.arr_i32", [1, 2, 3])
    w.add_array("a.arr_str", ["x", "yz"])
    w.add_uint32("general.alignment", 64)
    for t in (QT.Q4_K, QT.Q6_K, QT.Q5_0, QT.Q8_0, QT.F16):
        w.add_tensor("t." + t.name, raw_blocks(t, 1 if gguf.GGML_QUANT_SIZES[t][0] == 256 else 8).reshape(1, -1), raw_dtype=t)
    w.add_tensor("t.F32", np.arange(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    dequant_fixture()
    tokens, merges = tiny(os.path.join(OUT, "tiny-llama.gguf"), os.path.join(OUT, "tiny-llama.want.safetensors"))
    tiny(os.path.join(OUT, "tiny-untied.gguf"), os.path.join(OUT, "tiny-untied.want.safetensors"), tied=False,
         pre="gpt2", keep={"lm_head.weight", "model.layers.1.self_attn.k_proj.weight"})
    tiny(os.path.join(OUT, "tiny-smollm.gguf"), pre="smollm")
    tiny(os.path.join(OUT, "bad-arch.gguf"), arch="qwen2")
    tiny(os.path.join(OUT, "bad-pre.gguf"), pre="made-up-pre")
    tiny(os.path.join(OUT, "bad-shape.gguf"), bad_k=True)
    # an unsupported type: gguf-py has no Q2_K quantizer, so a tensor of raw Q2_K bytes
    w = gguf.GGUFWriter(os.path.join(OUT, "bad-type.gguf"), arch="llama")
    w.add_tensor("token_embd.weight", rng.integers(0, 256, size=(4, 84), dtype=np.uint8), raw_dtype=QT.Q2_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "tokenizer.txt"), "w") as f:
        for pre in ("llama-bpe", "gpt2", "smollm"):
            tk = reference_tokenizer(tokens, merges, pre)
            for t in TEXTS:
                ids = tk.encode(t, add_special_tokens=False).ids
                assert tk.decode(ids, skip_special_tokens=False) == t
                f.write(f"{pre}\t{t.encode().hex()}\t{','.join(map(str, ids))}\n")
    fuzz_corpus()  # after the fixtures above: they keep their random streams
    # Llama-3.1 rope scaling as the converter stores it (factor 8, low 1, high 32, orig 8192: two
    # of the tiny model's 8 frequencies in the smooth band)
    tiny(os.path.join(OUT, "tiny-llama31.gguf"), rope=(8.0, 1.0, 32.0, 8192), add_bos=True)


if __name__ == "__main__":
    main()
