#!/usr/bin/env python3
"""serve-merge.py: two runs of `skv-bench serve --label on|off` into the JSON of a comparison.

    scripts/serve-merge.py ON.json OFF.json OUT.json

scripts/serve-bench --sequential runs the same load against one skvd at a time (swiftkv on, then
off, each with the whole GPU to itself) and calls this to write what `skv-bench serve --compare`
writes when both servers run at once: mode "compare" with "on", "off" and "ratio", or, for a
sweep, mode "sweep" with the runs interleaved (on, off per rate) and "ratios". It also prints the
ratios. The two inputs must be the same load (lengths, prompts, arrivals); anything else is an
error that names the field.
"""
import json
import sys

SETTINGS = ("input_len", "output_len", "num_prompts", "prompt_kind", "temperature", "seed", "warmup", "model_dir")
SAME = SETTINGS[:-1] + ("concurrency",)
THROUGHPUTS = ("request_throughput", "output_throughput", "total_token_throughput")
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")


def runs_of(d):
    return d["runs"] if d.get("mode") == "sweep" else [d]


def ratio(on, off):
    """What skv-bench's ratio_json computes: on / off, null where off is 0."""
    r = {k: (on[k] / off[k] if off[k] else None) for k in THROUGHPUTS}
    for k in LATENCIES:
        r[k] = {p: (on[k][p] / off[k][p] if off[k][p] else None) for p in ("mean", "p50", "p90", "p99")}
    return r


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    on, off = (json.load(open(p)) for p in argv[1:3])
    for k in SAME:
        if on.get(k) != off.get(k):
            sys.stderr.write("serve-merge: the runs differ in %s: %r (on) vs %r (off)\n" % (k, on.get(k), off.get(k)))
            return 1
    ron, roff = runs_of(on), runs_of(off)
    if len(ron) != len(roff):
        sys.stderr.write("serve-merge: %d runs (on) vs %d (off)\n" % (len(ron), len(roff)))
        return 1
    for a, b in zip(ron, roff):
        if a.get("swiftkv") != "on" or b.get("swiftkv") != "off":
            sys.stderr.write("serve-merge: the runs are labelled %r and %r, not on and off\n" % (a.get("swiftkv"), b.get("swiftkv")))
            return 1
        if a.get("request_rate") != b.get("request_rate"):
            sys.stderr.write("serve-merge: request_rate %r (on) vs %r (off)\n" % (a.get("request_rate"), b.get("request_rate")))
            return 1
    out = {"benchmark": on.get("benchmark", "skv-bench serve")}
    out.update((k, on[k]) for k in SETTINGS if k in on)
    out["servers"] = "sequential"
    if on.get("mode") == "sweep":
        out["mode"] = "sweep"
        out["runs"] = [r for pair in zip(ron, roff) for r in pair]
        out["ratios"] = [dict(ratio(a, b), request_rate=a.get("request_rate")) for a, b in zip(ron, roff)]
    else:
        out["mode"] = "compare"
        out["on"], out["off"] = ({k: v for k, v in d.items() if k not in SETTINGS + ("benchmark", "mode")} for d in (on, off))
        out["ratio"] = ratio(on, off)
    with open(argv[3], "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print("%-10s %12s %12s %12s %12s %12s" % ("rate", "total tok/s", "on/off", "TTFT p50", "TPOT p50", "TPOT p99"))
    for a, b in zip(ron, roff):
        rate = a.get("request_rate")
        rs = "inf" if rate is None else "%g" % rate
        rr = ratio(a, b)
        print("%-10s %12.0f %12.2f %12.2f %12.2f %12.2f   (on/off)" % (
            rs, a["total_token_throughput"], rr["total_token_throughput"] or 0, rr["ttft_ms"]["p50"] or 0,
            rr["tpot_ms"]["p50"] or 0, rr["tpot_ms"]["p99"] or 0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
