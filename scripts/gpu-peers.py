#!/usr/bin/env python3
"""gpu-peers.py: the peers of swiftkv's CUDA numbers, on the same GPU in the same run (issue 15).

Run by scripts/gpu-check on the GPU machine (which has PyTorch and transformers), after our own
benchmarks, in its own process so that the GPU's memory is free again:
  - PyTorch's scaled_dot_product_attention on our prefill attention shapes: causal, one sequence
    of 2048 and 8192 tokens, 32 query heads over 8 KV heads, head_dim 128, bf16. Timed once with
    each backend that takes the shape (flash, cuDNN, efficient; GQA through enable_gqa, and the
    flash backend also with K/V expanded to 32 heads), the best kept as "theirs".
  - transformers' LlamaForCausalLM with the Llama-3.1-8B shape and random weights made from its
    config on the GPU (no download), bf16, SDPA attention, eager (no graphs, no compile):
    prefill of one 2048 and one 8192-token prompt (last-token logits only, as our engine), and
    decode steps at batch 1 and 32 after a 2048-token prefill (DynamicCache).
FLOPs of causal attention: 4 d h L (L + 1) / 2, as skv-bench's per-op rows count them.
Times: CUDA events around each call, median of the repeats after warm-up; inputs random normal.
Writes JSON (--json FILE) and prints one line per figure.
  scripts/gpu-peers.py [--json FILE] [--no-llama] [--no-sdpa] [--lengths 2048,8192] [--batches 1,32]
                      [--config MODEL_DIR [--save OUT_DIR]]
--config takes the llama shape from MODEL_DIR/config.json instead (SmolLM2-135M's, say: the
weights do not change the time), and --save writes the random model for skv-bench to run.
"""
import argparse
import json
import statistics
import sys
import time


def timed(torch, fn, warmup, repeat):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def sdpa_peers(torch, lengths, out):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    h, hkv, d = 32, 8, 128
    res = {}
    for L in lengths:
        q = torch.randn(1, h, L, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, hkv, L, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(1, hkv, L, d, device="cuda", dtype=torch.bfloat16)
        ke, ve = k.repeat_interleave(h // hkv, dim=1), v.repeat_interleave(h // hkv, dim=1)
        flops = 4.0 * d * h * L * (L + 1) / 2
        tries = {}
        variants = [
            ("default, enable_gqa", None, k, v, True),
            ("flash, enable_gqa", SDPBackend.FLASH_ATTENTION, k, v, True),
            ("flash, K/V expanded", SDPBackend.FLASH_ATTENTION, ke, ve, False),
            ("cudnn, enable_gqa", SDPBackend.CUDNN_ATTENTION, k, v, True),
            ("cudnn, K/V expanded", SDPBackend.CUDNN_ATTENTION, ke, ve, False),
            ("efficient, enable_gqa", SDPBackend.EFFICIENT_ATTENTION, k, v, True),
        ]
        for name, be, kk, vv, gqa in variants:
            def call(kk=kk, vv=vv, gqa=gqa):
                F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=gqa)
            try:
                if be is None:
                    ms = timed(torch, call, 5, 20)
                else:
                    with sdpa_kernel(be):
                        ms = timed(torch, call, 5, 20)
            except Exception as e:  # a backend that does not take the shape
                print("sdpa L=%d %-24s not available (%s)" % (L, name, str(e).splitlines()[0][:80]))
                continue
            tries[name] = {"ms": ms, "tflops": flops / (ms * 1e9)}
            print("sdpa L=%d %-24s %8.3f ms  %6.1f TFLOP/s" % (L, name, ms, flops / (ms * 1e9)))
        if tries:
            best = max(tries, key=lambda n: tries[n]["tflops"])
            res[str(L)] = {"best": best, "tflops": tries[best]["tflops"], "ms": tries[best]["ms"], "all": tries}
        del q, k, v, ke, ve
    out["sdpa"] = res


def llama_peers(torch, lengths, batches, out, config_dir=None, save_dir=None):
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    if config_dir:  # another shape (SmolLM2's, say): its config.json, random weights all the same
        cfg = LlamaConfig.from_pretrained(config_dir)
    else:
        cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                          max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
                          tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    t0 = time.time()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    print("llama %s shape, random weights, made in %.1f s (transformers %s)" %
          (config_dir or "8B", time.time() - t0, transformers.__version__))
    if save_dir:  # the same weights for our engine to run (bf16 safetensors, transformers' layout)
        model.save_pretrained(save_dir)
    res = {"transformers": transformers.__version__, "prefill": {}, "decode": {}}
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.inference_mode():
        for L in lengths:
            ids = torch.randint(0, cfg.vocab_size, (1, L), device="cuda", generator=gen)
            ms = timed(torch, lambda: model(ids, use_cache=False, logits_to_keep=1), 2, 5)
            res["prefill"][str(L)] = {"ms": ms, "tok_s": L / ms * 1e3}
            print("llama prefill %5d: %8.2f ms  %8.0f tok/s" % (L, ms, L / ms * 1e3))
        for B in batches:
            from transformers import DynamicCache
            ids = torch.randint(0, cfg.vocab_size, (B, 2048), device="cuda", generator=gen)
            cache = DynamicCache()
            r = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            nxt = r.logits[:, -1:].argmax(-1)
            cache = r.past_key_values
            times = []
            for step in range(13):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                r = model(nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
                nxt = r.logits[:, -1:].argmax(-1)
                b.record()
                b.synchronize()
                if step >= 3:
                    times.append(a.elapsed_time(b))
                cache = r.past_key_values
            ms = statistics.median(times)
            res["decode"][str(B)] = {"ms": ms, "tok_s": B / ms * 1e3}
            print("llama decode batch %2d, 2k ctx: %7.2f ms/step  %7.0f tok/s" % (B, ms, B / ms * 1e3))
            del cache, r, ids
            torch.cuda.empty_cache()
    out["llama"] = res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--no-sdpa", action="store_true")
    ap.add_argument("--config", help="a model directory whose config.json gives the llama shape")
    ap.add_argument("--save", help="write the random-weight llama there (for skv-bench on the same model)")
    o = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu-peers: no PyTorch here", file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("gpu-peers: no GPU", file=sys.stderr)
        return 77
    lengths = [int(x) for x in o.lengths.split(",")]
    batches = [int(x) for x in o.batches.split(",")]
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print("gpu-peers on %s, torch %s" % (out["device"], torch.__version__))
    if not o.no_sdpa:
        sdpa_peers(torch, lengths, out)
    if not o.no_llama:
        try:
            llama_peers(torch, lengths, batches, out, o.config, o.save)
        except Exception as e:  # out of memory or time: the SDPA figures still count
            print("gpu-peers: llama skipped: %s" % e, file=sys.stderr)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
