#!/usr/bin/env python3
"""make-fixtures.py: the golden fixtures of the parity tests (tests/test-parity.c, docs/testing.md).

Writes tests/fixtures/parity/:

  <model>/config.json, generation_config.json, model.safetensors   tiny checkpoints skv-run loads
  golden/<case>.npy    float32 [K, vocab]: row i = the logits from which generated token i was
                       chosen (row 0: the last prompt token's), as skv-run --logits-out writes them
  manifest.txt         one line per check; tests/test-parity.c reads it

Two kinds of golden:

  hf   plain-Llama checkpoints made by Hugging Face transformers itself (LlamaConfig +
       LlamaForCausalLM, random init under a fixed torch seed, save_pretrained), covering GQA,
       MQA, MHA, head_dim != hidden/heads, tied and untied embeddings, attention and MLP biases,
       llama3 rope scaling with a small original_max_position_embeddings (so high-, medium- and
       low-frequency dims all occur), default rope, bf16- and fp32-stored weights. Golden =
       transformers run in float32 (loaded with dtype=torch.float32 even when stored bf16, eager
       attention), greedy, the full sequence re-run each step (use_cache=False).
  ref  an independent float64 numpy implementation of docs/swiftkv.md's "forward, exactly" (all
       tokens through all layers; layers >= L take q from q_proj_swiftkv and k/v from the group
       owner's k/v_proj_swiftkv applied to s = RMSNorm(x_L; norm_swiftkv)), reading the
       checkpoint with the safetensors package, re-run on prompt + generated tokens each step.
       Used on SwiftKV checkpoints made by our skv-mkmodel (G = 1 and 2, tied and untied, GQA,
       MQA and MHA, head_dim != hidden/heads, attention and MLP biases, bf16 and fp16), for
       --swiftkv on (the student) and --swiftkv off (the teacher: the original q/k/v in every
       layer); on a "plain twin": a SwiftKV checkpoint rewritten as a plain Llama (config
       model_type llama, swiftkv keys dropped; *_swiftkv tensors and norm_swiftkv dropped); and
       on every hf checkpoint too (a tighter check than transformers' own fp32 rounding allows).

The reference validates itself: its plain-Llama path must agree with transformers on every hf
checkpoint and on the plain twin, to 1e-10 with transformers in float64 (its fp32 islands, RoPE
angles, RMSNorm and softmax, switched to float64) and to 1e-4 in float32, or the script stops.
The SwiftKV-only parts (norm_swiftkv, the owners' k/v, the group mapping) have no transformers
counterpart; they are the few lines of forward() below, written from docs/swiftkv.md.

EOS: golden generation never stops early. Both sides use ignore-eos semantics: the goldens come
from a plain greedy loop of K steps without any EOS test, and the test passes --ignore-eos to
skv-run. (eos ids are still written, as real checkpoints have them.)

Prompts are random ids from a seeded generator; a prompt is kept only if every greedy step's
winning margin (top1 - top2) is at least MARGIN of the row's largest |logit| in every golden of
that prompt, so a token flip within the tests' tolerances cannot happen by accident. Lengths
span several 16-token KV blocks.

Deterministic: fixed seeds, fixed shapes; rerunning gives the same files on the same library
versions (torch's random init may differ across torch releases; the checks do not depend on it).
Run by hand (never in CI), from the repository root, after building skv-mkmodel:

    meson setup build-par && ninja -C build-par tools/skv-mkmodel
    /opt/skvpy/bin/python scripts/make-fixtures.py build-par/tools/skv-mkmodel

Needs torch, transformers (5.x), numpy and safetensors. Replaces tests/fixtures/parity/ whole.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

K = 8  # generated tokens per case
MARGIN = 2e-3  # minimum (top1 - top2) / max|logit| of every greedy step in every golden
HF_REF_TOL64 = 1e-10  # transformers in float64 (its fp32 islands switched to fp64) vs the fp64 reference
HF_REF_TOL32 = 1e-4  # transformers in float32 vs the fp64 reference

# ----------------------------------------------------------------------------------------------
# The fp64 reference (docs/swiftkv.md, "The forward, exactly")


class Cfg:
    def __init__(self, c):
        self.raw = c
        self.N = c["num_hidden_layers"]
        self.H = c["hidden_size"]
        self.I = c["intermediate_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.d = c.get("head_dim") or self.H // self.nh
        self.V = c["vocab_size"]
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.tie = bool(c.get("tie_word_embeddings", False))
        self.attn_bias = bool(c.get("attention_bias", False))
        self.mlp_bias = bool(c.get("mlp_bias", False))
        self.swiftkv = c.get("model_type") == "llama_swiftkv"
        self.L = (c.get("num_key_value_layers") or self.N) if self.swiftkv else self.N
        self.G = (c.get("key_value_group_size") or 1) if self.swiftkv else 1
        assert 1 <= self.L <= self.N and (self.N - self.L) % self.G == 0
        # rope: transformers 5's rope_parameters, or classic rope_theta + rope_scaling
        rp = c.get("rope_parameters")
        rs = rp if rp else (c.get("rope_scaling") or {})
        self.theta = float((rp or {}).get("rope_theta", c.get("rope_theta", 10000.0)))
        self.rope_type = rs.get("rope_type", rs.get("type", "default"))
        self.rope = dict(rs)


def inv_freq(cfg):
    """Inverse frequencies in float64, with llama3 scaling (transformers' definition)."""
    d = cfg.d
    inv = 1.0 / cfg.theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    regimes = set()
    if cfg.rope_type == "llama3":
        f = float(cfg.rope["factor"])
        lo = float(cfg.rope.get("low_freq_factor", 1.0))
        hi = float(cfg.rope.get("high_freq_factor", 4.0))
        orig = float(cfg.rope.get("original_max_position_embeddings", 8192))
        low_wl, high_wl = orig / lo, orig / hi
        wl = 2 * math.pi / inv
        scaled = np.where(wl > low_wl, inv / f, inv)
        smooth = (orig / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / f + smooth * scaled
        medium = (wl >= high_wl) & (wl <= low_wl)
        regimes = {"high" if w < high_wl else "low" if w > low_wl else "medium" for w in wl}
        inv = np.where(medium, smoothed, scaled)
    elif cfg.rope_type not in ("default", None):
        raise SystemExit(f"rope type {cfg.rope_type} is not in the reference")
    return inv, regimes


def load_weights(model_dir):
    """Every tensor of model.safetensors as float64 numpy (bf16/fp16 widen exactly)."""
    w = {}
    with safe_open(os.path.join(model_dir, "model.safetensors"), framework="pt") as f:
        for name in f.keys():
            w[name] = f.get_tensor(name).to(torch.float64).numpy()
    return w


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, inv):
    """Rotate-half RoPE. x [T, heads, d], pos [T]."""
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # [T, d/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def attention(q, k, v, d):
    """Causal GQA attention. q [T, nh, d], k, v [T, nkv, d] -> [T, nh * d]."""
    T, nh, _ = q.shape
    rep = nh // k.shape[1]
    out = np.empty((T, nh, d))
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    for h in range(nh):
        sc = q[:, h, :] @ k[:, h // rep, :].T / math.sqrt(d)
        sc[mask] = -np.inf
        sc -= sc.max(axis=1, keepdims=True)
        p = np.exp(sc)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ v[:, h // rep, :]
    return out.reshape(T, nh * d)


def forward(w, cfg, ids, swiftkv):
    """Logits [T, V] of every position. swiftkv: the SwiftKV forward (layers >= L read the K/V
    that the group owner's k/v_proj_swiftkv makes from s = RMSNorm(x_L; norm_swiftkv));
    otherwise the plain Llama forward with each layer's own q/k/v (the teacher)."""
    T = len(ids)
    pos = np.arange(T)
    inv, _ = inv_freq(cfg)
    L = cfg.L if swiftkv else cfg.N
    d, nh, nkv = cfg.d, cfg.nh, cfg.nkv

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        b = w.get(name + ".bias")
        return y if b is None else y + b

    x = w["model.embed_tokens.weight"][np.asarray(ids)]
    s = None
    for i in range(cfg.N):
        p = f"model.layers.{i}."
        if i == L:
            s = rmsnorm(x, w["model.norm_swiftkv.weight"], cfg.eps)  # x_L: the stream leaving layer L-1
        a = rmsnorm(x, w[p + "input_layernorm.weight"], cfg.eps)
        if i < L:
            q = lin(a, p + "self_attn.q_proj")
            k = lin(a, p + "self_attn.k_proj")
            v = lin(a, p + "self_attn.v_proj")
        else:
            o = L + (i - L) // cfg.G * cfg.G  # the group owner
            q = lin(a, p + "self_attn.q_proj_swiftkv")
            k = lin(s, f"model.layers.{o}.self_attn.k_proj_swiftkv")
            v = lin(s, f"model.layers.{o}.self_attn.v_proj_swiftkv")
        q = rope(q.reshape(T, nh, d), pos, inv)
        k = rope(k.reshape(T, nkv, d), pos, inv)
        v = v.reshape(T, nkv, d)
        x = x + lin(attention(q, k, v, d), p + "self_attn.o_proj")
        m = rmsnorm(x, w[p + "post_attention_layernorm.weight"], cfg.eps)
        g = lin(m, p + "mlp.gate_proj")
        u = lin(m, p + "mlp.up_proj")
        x = x + lin(g / (1 + np.exp(-g)) * u, p + "mlp.down_proj")
    x = rmsnorm(x, w["model.norm.weight"], cfg.eps)
    head = w["model.embed_tokens.weight"] if cfg.tie else w["lm_head.weight"]
    return x @ head.T


def greedy(step, prompt, k=K):
    """k greedy steps of step(ids) -> last-position logits (float64 [V]); no EOS test."""
    ids, rows = list(prompt), []
    for _ in range(k):
        row = np.asarray(step(ids), dtype=np.float64)
        rows.append(row)
        ids.append(int(np.argmax(row)))
    return ids[len(prompt):], np.stack(rows)


def margin(rows):
    """Smallest (top1 - top2) / max|logit| over the rows."""
    m = 1.0
    for r in rows:
        t = np.sort(r)
        m = min(m, (t[-1] - t[-2]) / np.max(np.abs(r)))
    return m


def rel_err(a, b):
    """Worst row of max|a - b| / max|b| (tests/test-util.c's tu_rel_err)."""
    return max(np.max(np.abs(x - y)) / np.max(np.abs(y)) for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------------
# transformers


def eager64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' eager attention with the softmax in the query's dtype (it forces fp32).
    Only for what this script runs: one unpadded sequence, no cache, so the mask is causal
    (transformers hands a custom attention function a mask of another format)."""
    from transformers.models.llama.modeling_llama import repeat_kv

    k = repeat_kv(key, module.num_key_value_groups)
    v = repeat_kv(value, module.num_key_value_groups)
    w = torch.matmul(query, k.transpose(2, 3)) * scaling
    T = query.shape[2]
    assert k.shape[2] == T
    w = w.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    w = torch.nn.functional.softmax(w, dim=-1)
    return torch.matmul(w, v).transpose(1, 2).contiguous(), w


def hf_model(model_dir, dtype, cfg):
    """transformers' LlamaForCausalLM from model_dir. transformers keeps three islands in fp32
    whatever the model dtype: the RoPE angles, RMSNorm and the attention softmax. For a float64
    model they are switched to float64 (after checking that transformers' fp32 inverse
    frequencies, llama3 scaling included, match the reference's within fp32 rounding), so the
    reference can be compared with transformers at fp64 precision."""
    from transformers import AttentionInterface, LlamaForCausalLM

    attn = "eager"
    if dtype == torch.float64:
        AttentionInterface.register("eager64", eager64)
        attn = "eager64"
    m = LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
    m.eval()
    if dtype == torch.float64:
        rot = m.model.rotary_emb
        inv, _ = inv_freq(cfg)
        e = np.max(np.abs(rot.inv_freq.to(torch.float64).numpy() - inv) / inv)
        if e > 1e-6 or rot.attention_scaling != 1.0:
            raise SystemExit(f"{model_dir}: rope inverse frequencies differ from transformers' by {e:.2e}")
        inv64 = torch.tensor(inv, dtype=torch.float64)

        def rope64(x, position_ids):
            freqs = position_ids[..., None].to(torch.float64) * inv64
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

        rot.forward = rope64
        n = 0
        for mod in m.modules():
            if type(mod).__name__ == "LlamaRMSNorm":
                mod.forward = lambda x, mod=mod: mod.weight * (
                    x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + mod.variance_epsilon))
                n += 1
        assert n == 2 * cfg.N + 1
    return m


def hf_step(model):
    def step(ids):
        with torch.no_grad():
            out = model(torch.tensor([ids], dtype=torch.long), use_cache=False)
        return out.logits[0, -1].to(torch.float64).numpy()

    return step


def make_hf(out_dir, spec):
    """A plain Llama made and saved by transformers itself."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kw = dict(spec["config"])
    torch.manual_seed(spec["seed"])
    cfg = LlamaConfig(**kw)
    model = LlamaForCausalLM(cfg)  # transformers' own init, std = initializer_range
    # transformers initialises norms to 1 and biases to 0, which would leave the norm weights and
    # the bias adds untested: draw them too (same seeded generator).
    g = torch.Generator().manual_seed(spec["seed"] + 1000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    model.to(spec["dtype"])
    model.save_pretrained(out_dir)
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)
    write_generation_config(out_dir, cfg.bos_token_id, cfg.eos_token_id)
    for f in os.listdir(out_dir):
        if f not in ("config.json", "generation_config.json", "model.safetensors"):
            raise SystemExit(f"{out_dir}: save_pretrained wrote an unexpected {f}")


def write_generation_config(model_dir, bos, eos):
    with open(os.path.join(model_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# skv-mkmodel checkpoints and the plain twin


def make_skv(out_dir, mkmodel, args):
    subprocess.run([mkmodel, "--preset", "tiny", *args.split(), out_dir], check=True, stdout=subprocess.DEVNULL)
    # skv-run needs config.json, generation_config.json and model.safetensors only
    for f in ("tokenizer.json", "tokenizer_config.json"):
        p = os.path.join(out_dir, f)
        if os.path.exists(p):
            os.remove(p)
    with open(os.path.join(out_dir, "config.json")) as f:
        c = json.load(f)
    write_generation_config(out_dir, c["bos_token_id"], c["eos_token_id"])


def make_twin(src_dir, out_dir):
    """The same weights as a plain Llama: config rewritten, the SwiftKV tensors dropped."""
    os.makedirs(out_dir)
    with open(os.path.join(src_dir, "config.json")) as f:
        c = json.load(f)
    c["model_type"] = "llama"
    c["architectures"] = ["LlamaForCausalLM"]
    for k in ("swiftkv", "num_key_value_layers", "key_value_group_size", "last_key_value_heads"):
        c.pop(k, None)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.copy(os.path.join(src_dir, "generation_config.json"), out_dir)
    t = {}
    with safe_open(os.path.join(src_dir, "model.safetensors"), framework="pt") as f:
        for name in f.keys():
            if "_swiftkv" not in name:
                t[name] = f.get_tensor(name)
    save_file(t, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


# ----------------------------------------------------------------------------------------------
# The fixture list

LLAMA3_SMALL = lambda theta, orig: {  # noqa: E731
    "rope_type": "llama3", "rope_theta": theta, "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": orig}

HF = [
    # GQA, untied, head_dim == hidden/heads (12), llama3 rope (theta 1e4, orig 64: dims 0 | 1 | 2-5),
    # bf16; a one-token prompt and one that spans 7 KV blocks
    dict(name="hf-gqa-llama3-bf16", seed=101, dtype=torch.bfloat16, lens=[1, 41, 100], config=dict(
        vocab_size=384, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2, rms_norm_eps=1e-5,
        max_position_embeddings=512, bos_token_id=380, eos_token_id=[381, 382],
        tie_word_embeddings=False, rope_parameters=LLAMA3_SMALL(10000.0, 64))),
    # MQA (1 KV head), tied, head_dim 24 != 48/4, llama3 rope (theta 5e5, orig 32), bf16
    dict(name="hf-mqa-tied-hd24-bf16", seed=102, dtype=torch.bfloat16, lens=[7, 53], config=dict(
        vocab_size=320, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=24, initializer_range=0.2,
        rms_norm_eps=1e-5, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=True, rope_parameters=LLAMA3_SMALL(500000.0, 32))),
    # attention and MLP biases, head_dim 12 != 32/4, untied, llama3 rope, fp32-stored
    dict(name="hf-bias-hd12-fp32", seed=103, dtype=torch.float32, lens=[18, 77], config=dict(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=12, initializer_range=0.25,
        rms_norm_eps=1e-5, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
        rope_parameters=LLAMA3_SMALL(10000.0, 64))),
    # MHA (kv heads == heads), default (unscaled) rope, tied, bf16
    dict(name="hf-mha-rope-default-bf16", seed=104, dtype=torch.bfloat16, lens=[33, 64], config=dict(
        vocab_size=400, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, initializer_range=0.25, rms_norm_eps=1e-6,
        max_position_embeddings=512, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
]

# skv-mkmodel's tiny preset: vocab 512, rope llama3 theta 5e5 orig 1024 (with head_dim >= 16 all
# three regimes occur), eps 1e-5. Its tied checkpoints are dominated by each token's own
# embedding, so they greedily repeat the last token; the logits rows still carry every layer.
SKV = [
    # G = 1, GQA, untied, head_dim 16 != 48/4, bf16; also the teacher (--swiftkv off) and its twin
    dict(name="skv-g1-gqa-bf16", lens=[9, 46, 97], teacher=True, twin=True,
         args="--layers 4 --hidden 48 --intermediate 64 --heads 4 --kv-heads 2 --head-dim 16 "
              "--swiftkv-layers 2 --group 1 --untie --dtype bf16 --seed 11"),
    # G = 2 (AcrossKV), MQA, untied, head_dim == hidden/heads, bf16
    dict(name="skv-g2-mqa-bf16", lens=[5, 60], teacher=False, twin=False,
         args="--layers 4 --hidden 32 --intermediate 64 --heads 2 --kv-heads 1 --head-dim 16 "
              "--swiftkv-layers 2 --group 2 --untie --dtype bf16 --seed 12"),
    # G = 2 with two later groups (L = 1 of 5), MHA, head_dim 24 != 32/2, attention and MLP
    # biases, untied, bf16; also the teacher
    dict(name="skv-g2-bias-hd24-bf16", lens=[17, 83], teacher=True, twin=False,
         args="--layers 5 --hidden 32 --intermediate 48 --heads 2 --kv-heads 2 --head-dim 24 "
              "--swiftkv-layers 1 --group 2 --attention-bias --mlp-bias --untie --dtype bf16 --seed 13"),
    # G = 1 with L = 1 of 3, MQA, tied, head_dim 20 != 40/4, fp16
    dict(name="skv-g1-l1-mqa-tied-fp16", lens=[2, 49], teacher=False, twin=False,
         args="--layers 3 --hidden 40 --intermediate 64 --heads 4 --kv-heads 1 --head-dim 20 "
              "--swiftkv-layers 1 --group 1 --tie --dtype fp16 --seed 14"),
]


def csv(ids):
    return ",".join(str(i) for i in ids)


class Writer:
    def __init__(self, out):
        self.out = out
        self.lines = []
        os.makedirs(os.path.join(out, "golden"))

    def case(self, kind, model, swiftkv, prompt, ids, rows, tag):
        name = f"{model}.{tag}.npy"
        np.save(os.path.join(self.out, "golden", name), rows.astype("<f4"))
        self.lines.append(f"{kind} {model} {swiftkv} {csv(prompt)} {csv(ids)} golden/{name}")
        return f"golden/{name}"


def pick_prompt(V, n, seed, goldens, same_ids):
    """The first seeded random prompt of length n whose greedy steps are all well separated in
    every golden function (and, with same_ids, give the same tokens in all of them); returns
    (prompt, [(ids, rows) per golden])."""
    for attempt in range(200):
        rng = np.random.default_rng([seed, n, attempt])
        prompt = [int(x) for x in rng.integers(0, V, n)]
        res = [greedy(g, prompt) for g in goldens]
        if all(margin(rows) >= MARGIN for _, rows in res) and (
                not same_ids or all(r[0] == res[0][0] for r in res)):
            return prompt, res
    raise SystemExit(f"no well-separated prompt of length {n} (seed {seed})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mkmodel", help="path of the built skv-mkmodel")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                  "tests", "fixtures", "parity"))
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out = os.path.abspath(a.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    wr = Writer(out)
    report = []

    for spec in HF:
        name = spec["name"]
        mdir = os.path.join(out, name)
        make_hf(mdir, spec)
        with open(os.path.join(mdir, "config.json")) as f:
            cfg = Cfg(json.load(f))
        _, regimes = inv_freq(cfg)
        if cfg.rope_type == "llama3" and regimes != {"high", "medium", "low"}:
            raise SystemExit(f"{name}: llama3 rope covers only {sorted(regimes)}")
        w = load_weights(mdir)
        hf32 = hf_step(hf_model(mdir, torch.float32, cfg))
        hf64 = hf_step(hf_model(mdir, torch.float64, cfg))
        ref = lambda ids: forward(w, cfg, ids, False)[-1]  # noqa: E731
        for pi, n in enumerate(spec["lens"]):
            prompt, ((ids, rows32), (_, rows_ref)) = pick_prompt(cfg.V, n, spec["seed"], [hf32, ref], True)
            # validate the reference against transformers: fp64 and fp32, on the same tokens
            rows64 = np.stack([hf64(prompt + ids[:j]) for j in range(K)])
            e64, e32 = rel_err(rows_ref, rows64), rel_err(rows32, rows_ref)
            report.append(f"{name} p{pi} (len {n}): ref vs HF fp64 {e64:.2e}, HF fp32 vs ref {e32:.2e}, "
                          f"margin {margin(rows32):.2e}")
            if e64 > HF_REF_TOL64 or e32 > HF_REF_TOL32:
                raise SystemExit("the fp64 reference disagrees with transformers: " + report[-1])
            wr.case("hf", name, "-", prompt, ids, rows32, f"p{pi}")
            wr.case("ref", name, "-", prompt, ids, rows_ref, f"p{pi}.ref")

    for si, spec in enumerate(SKV):
        name = spec["name"]
        mdir = os.path.join(out, name)
        make_skv(mdir, a.mkmodel, spec["args"])
        with open(os.path.join(mdir, "config.json")) as f:
            cfg = Cfg(json.load(f))
        assert cfg.swiftkv and cfg.L < cfg.N
        _, regimes = inv_freq(cfg)
        if regimes != {"high", "medium", "low"}:
            raise SystemExit(f"{name}: llama3 rope covers only {sorted(regimes)}")
        w = load_weights(mdir)
        student = lambda ids: forward(w, cfg, ids, True)[-1]  # noqa: E731
        teacher = lambda ids: forward(w, cfg, ids, False)[-1]  # noqa: E731
        twin = None
        if spec["twin"]:
            tname = name + "-plain"
            tdir = os.path.join(out, tname)
            make_twin(mdir, tdir)
            with open(os.path.join(tdir, "config.json")) as f:
                tcfg = Cfg(json.load(f))
            assert not tcfg.swiftkv
            tw = load_weights(tdir)
            twin = hf_step(hf_model(tdir, torch.float64, tcfg))
        for pi, n in enumerate(spec["lens"]):
            goldens = [student, teacher] if spec["teacher"] else [student]
            prompt, res = pick_prompt(cfg.V, n, 1000 + si, goldens, False)
            ids, rows = res[0]
            report.append(f"{name} p{pi} (len {n}): swiftkv on, margin {margin(rows):.2e}")
            wr.case("ref", name, "on", prompt, ids, rows, f"p{pi}.on")
            if spec["teacher"]:
                tids, trows = res[1]
                tfile = wr.case("ref", name, "off", prompt, tids, trows, f"p{pi}.off")
                msg = f"{name} p{pi} (len {n}): swiftkv off (teacher), margin {margin(trows):.2e}"
                if twin:
                    # the twin: same teacher golden; validate the reference on it through transformers
                    rows64 = np.stack([twin(prompt + tids[:j]) for j in range(K)])
                    e64 = rel_err(trows, rows64)
                    tref = np.stack([forward(tw, tcfg, prompt + tids[:j], False)[-1] for j in range(K)])
                    assert np.array_equal(tref, trows)
                    msg += f"; ref vs HF fp64 on the plain twin {e64:.2e}"
                    if e64 > HF_REF_TOL64:
                        raise SystemExit("the fp64 teacher disagrees with transformers: " + msg)
                    wr.lines.append(f"ref {tname} - {csv(prompt)} {csv(tids)} {tfile}")
                    wr.lines.append(f"twin {name} {tname} {csv(prompt)}")
                report.append(msg)

    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("# Generated by scripts/make-fixtures.py; read by tests/test-parity.c.\n"
                "# kind model swiftkv(on|off|-) prompt-ids golden-ids golden-logits\n"
                "#   kind hf: golden = transformers fp32; kind ref: golden = the fp64 reference\n"
                "# twin swiftkv-model plain-model prompt-ids: --swiftkv off must equal the plain twin\n")
        f.write(f"# K = {K} generated tokens per case; greedy margins >= {MARGIN} of max|logit|\n")
        for line in wr.lines:
            f.write(line + "\n")
    total = 0
    for root, _, files in os.walk(out):
        total += sum(os.path.getsize(os.path.join(root, x)) for x in files)
    print("\n".join(report))
    print(f"{len(wr.lines)} manifest lines, {total / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    sys.exit(main())
