#!/usr/bin/env python3
"""make-distill-fixtures: the float64 numpy reference of skv-distill's loss and gradient
(docs/distill.md), written independently of train/ (vectorized numpy, the whole vocabulary at
once, no tiles, gradients by central differences of the numpy loss).

For two of the transformers-made parity checkpoints (tests/fixtures/parity/hf-*) it builds the
student exactly as docs/swiftkv.md section 5 initialises it, computes
T^2 KL(softmax(z_teacher / T) || softmax(z_student / T)) averaged over the positions of a fixed
batch, and the gradient with respect to a seeded sample of elements of every trainable tensor.
tests/test-distill.c (test_numpy_reference) holds train/'s double model to these numbers.

  scripts/make-distill-fixtures.py [--out tests/fixtures/distill]

Needs numpy only.
"""
import argparse
import json
import math
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY = os.path.join(ROOT, "tests", "fixtures", "parity")
T = 2.0
H_FD = 1e-5
CASES = [
    # name, teacher fixture, L, G, samples per tensor
    ("bias-l1-g1", "hf-bias-hd12-fp32", 1, 1, 8),
    ("llama3-l1-g2", "hf-gqa-llama3-bf16", 1, 2, 8),
]
B, S = 2, 6


def load(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    # the format read by hand: numpy has no bfloat16 (bf16 widens exactly to fp32 by a shift)
    blob = open(os.path.join(model_dir, "model.safetensors"), "rb").read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    w = {}
    for k, t in header.items():
        if k == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = blob[8 + n + a:8 + n + b]
        if t["dtype"] == "BF16":
            v = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            v = np.frombuffer(raw, {"F16": np.float16, "F32": np.float32}[t["dtype"]])
        w[k] = v.astype(np.float64).reshape(t["shape"])
    return cfg, w


def dims(cfg):
    nh = cfg["num_attention_heads"]
    return dict(N=cfg["num_hidden_layers"], H=cfg["hidden_size"], nh=nh,
                nkv=cfg.get("num_key_value_heads") or nh,
                d=cfg.get("head_dim") or cfg["hidden_size"] // nh, V=cfg["vocab_size"],
                eps=float(cfg.get("rms_norm_eps", 1e-6)), tie=bool(cfg.get("tie_word_embeddings")))


def inv_freq(cfg, d):
    rp = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    if rp.get("rope_type", rp.get("type")) == "llama3":
        f, lo, hi = float(rp["factor"]), float(rp["low_freq_factor"]), float(rp["high_freq_factor"])
        orig = float(rp["original_max_position_embeddings"])
        wl = 2 * math.pi / inv
        scaled = np.where(wl > orig / lo, inv / f, inv)
        smooth = (orig / wl - lo) / (hi - lo)
        medium = (wl >= orig / hi) & (wl <= orig / lo)
        inv = np.where(medium, (1 - smooth) * scaled / f + smooth * scaled, scaled)
    return inv


def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, inv):
    """x [B, S, heads, d], positions 0..S-1 in each sequence."""
    ang = np.arange(x.shape[1])[:, None] * inv[None, :]
    c, s = np.cos(ang)[None, :, None, :], np.sin(ang)[None, :, None, :]
    h = x.shape[-1] // 2
    return np.concatenate([x[..., :h] * c - x[..., h:] * s, x[..., h:] * c + x[..., :h] * s], axis=-1)


def attend(q, k, v):
    """q [B, S, nh, d], k/v [B, S, nkv, d] -> [B, S, nh*d], causal, GQA."""
    nh, nkv, d = q.shape[2], k.shape[2], q.shape[3]
    k = np.repeat(k, nh // nkv, axis=2)
    v = np.repeat(v, nh // nkv, axis=2)
    sc = np.einsum("bihe,bjhe->bhij", q, k) / math.sqrt(d)
    sc = np.where(np.triu(np.ones((q.shape[1],) * 2, dtype=bool), 1), -np.inf, sc)
    p = np.exp(sc - sc.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhij,bjhe->bihe", p, v).reshape(q.shape[0], q.shape[1], nh * d)


def logits(w, cfg, ids, L, G, student):
    D = dims(cfg)
    inv = inv_freq(cfg, D["d"])

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    x = w["model.embed_tokens.weight"][ids]
    s = None
    for i in range(D["N"]):
        p = f"model.layers.{i}."
        a = rms(x, w[p + "input_layernorm.weight"], D["eps"])
        if student and i == L:
            s = rms(x, w["model.norm_swiftkv.weight"], D["eps"])
        if student and i >= L:
            o = L + (i - L) // G * G
            q = lin(a, p + "self_attn.q_proj_swiftkv")
            k = lin(s, f"model.layers.{o}.self_attn.k_proj_swiftkv")
            v = lin(s, f"model.layers.{o}.self_attn.v_proj_swiftkv")
        else:
            q, k, v = (lin(a, p + f"self_attn.{n}_proj") for n in "qkv")
        sh = x.shape[:2]
        q = rope(q.reshape(*sh, D["nh"], D["d"]), inv)
        k = rope(k.reshape(*sh, D["nkv"], D["d"]), inv)
        x = x + lin(attend(q, k, v.reshape(*sh, D["nkv"], D["d"])), p + "self_attn.o_proj")
        m = rms(x, w[p + "post_attention_layernorm.weight"], D["eps"])
        g, u = lin(m, p + "mlp.gate_proj"), lin(m, p + "mlp.up_proj")
        x = x + lin(g / (1 + np.exp(-g)) * u, p + "mlp.down_proj")
    x = rms(x, w["model.norm.weight"], D["eps"])
    head = w["model.embed_tokens.weight"] if D["tie"] else w["lm_head.weight"]
    return x @ head.T


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def loss(w, cfg, ids, L, G, zt):
    lps = log_softmax(logits(w, cfg, ids, L, G, True) / T)
    lpt = log_softmax(zt / T)
    return T * T * float(np.mean(np.sum(np.exp(lpt) * (lpt - lps), axis=-1)))


def student_init(w, cfg, L, G):
    """docs/swiftkv.md section 5; returns the trainable tensors' names."""
    N = dims(cfg)["N"]
    names = ["model.norm_swiftkv.weight"]
    w[names[0]] = w[f"model.layers.{L}.input_layernorm.weight"].copy()
    for i in range(L, N):
        for suf in ("weight", "bias"):
            src = f"model.layers.{i}.self_attn.q_proj.{suf}"
            if src in w:
                names.append(f"model.layers.{i}.self_attn.q_proj_swiftkv.{suf}")
                w[names[-1]] = w[src].copy()
        if (i - L) % G:
            continue
        for n in "kv":
            for suf in ("weight", "bias"):
                if f"model.layers.{i}.self_attn.{n}_proj.{suf}" in w:
                    names.append(f"model.layers.{i}.self_attn.{n}_proj_swiftkv.{suf}")
                    w[names[-1]] = np.mean([w[f"model.layers.{i + g}.self_attn.{n}_proj.{suf}"]
                                           for g in range(G)], axis=0)
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "distill"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, teacher, L, G, per in CASES:
        cfg, w = load(os.path.join(PARITY, teacher))
        V = dims(cfg)["V"]
        rng = np.random.default_rng(14)
        ids = rng.integers(0, V, size=(B, S))
        names = student_init(w, cfg, L, G)
        # a student away from its initialisation (with G = 1 and N - L = 1 it is the teacher):
        # element e of trainable tensor k (in skv_tm_tensors' order) += 0.1 sin(0.37 e + k)
        for k, n in enumerate(names):
            flat = w[n].reshape(-1)
            flat += 0.1 * np.sin(0.37 * np.arange(flat.size) + k)
        zt = logits(w, cfg, ids, L, G, False)
        l0 = loss(w, cfg, ids, L, G, zt)
        samples = []
        for n in names:
            flat = w[n].reshape(-1)
            for e in sorted(rng.choice(flat.size, size=min(per, flat.size), replace=False)):
                x0 = flat[e]
                flat[e] = x0 + H_FD
                lp = loss(w, cfg, ids, L, G, zt)
                flat[e] = x0 - H_FD
                lm = loss(w, cfg, ids, L, G, zt)
                flat[e] = x0
                samples.append([n, int(e), (lp - lm) / (2 * H_FD)])
        out = {"teacher": f"parity/{teacher}", "L": L, "G": G, "T": T, "B": B, "S": S,
               "tokens": ids.reshape(-1).tolist(), "loss": l0, "gradient": samples}
        path = os.path.join(args.out, name + ".json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        gmax = max(abs(s[2]) for s in samples)
        print(f"{path}: loss {l0:.9g}, {len(samples)} gradient samples, max |g| {gmax:.3g}")


if __name__ == "__main__":
    main()
