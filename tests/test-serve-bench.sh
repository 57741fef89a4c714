#!/bin/sh
# test-serve-bench.sh: scripts/serve-bench starts the real skvd (CPU backend, the tiny SwiftKV
# model) and `skv-bench serve` loads it: Poisson arrivals, a closed loop, --compare (two skvd,
# swiftkv on and off, at once, and one after the other with --sequential), and text prompts over a rate sweep with its CSV and plot. Each JSON must
# carry every fixed field with sane values: every request completed with exact prompt and output
# lengths, throughputs > 0, p99 >= p50. Speed is never asserted here.
#   test-serve-bench.sh SRCDIR SKV_MKMODEL     (skvd, skv-worker, skvctl, skv-bench: $SKVD,
#                                              $SKV_WORKER, $SKVCTL, $SKV_BENCH)
set -eu
src=$1
mkmodel=$2
: "${SKVD:?}" "${SKV_WORKER:?}" "${SKVCTL:?}" "${SKV_BENCH:?}"
export SKVD SKV_WORKER SKVCTL SKV_BENCH
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$mkmodel" --preset tiny --swiftkv-layers 2 "$d/m" >/dev/null
sb() { "$src/scripts/serve-bench" --backend cpu --threads 1 --log-dir "$d/logs" "$d/m" \
  --input-len 64 --output-len 8 --num-prompts 16 "$@"; }

sb --request-rate 400 --json "$d/rate.json"
sb --concurrency 4 --json "$d/conc.json"
sb --compare --json "$d/cmp.json"
"$src/scripts/serve-bench" --backend cpu --threads 1 --sequential --log-dir "$d/logs" "$d/m" --compare \
  --input-len 64 --output-len 8 --num-prompts 16 --json "$d/seq.json"
sb --text --sweep 400,inf --json "$d/sweep.json" --csv "$d/sweep.csv"
python3 "$src/scripts/plot-serve.py" "$d/sweep.json" -o "$d/sweep.svg"
python3 "$src/scripts/plot-serve.py" "$d/sweep.csv" -o "$d/sweep-csv.svg"

python3 - "$d" <<'EOF'
import json, sys, xml.dom.minidom
d = sys.argv[1]

def check(r, what, arrivals):
    for k in ("completed", "request_throughput", "total_token_throughput", "output_throughput", "ttft_ms", "tpot_ms"):
        assert k in r, (what, "missing", k)
    for k in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms"):
        s = r[k]
        for p in ("mean", "p50", "p90", "p99"):
            assert isinstance(s[p], (int, float)) and s[p] >= 0, (what, k, s)
        assert s["p99"] >= s["p90"] >= s["p50"] > 0 or k in ("queue_ms", "itl_ms"), (what, k, s)
        assert s["p99"] >= s["p50"], (what, k, s)
    assert r["completed"] == 16 and r["failed"] == 0, (what, r["completed"], r["failed"], r["errors"])
    assert r["total_input_tokens"] == 16 * 64 and r["total_output_tokens"] == 16 * 8, what
    assert r["prompt_len_mismatch"] == 0 and r["short_outputs"] == 0, what
    for k in ("request_throughput", "total_token_throughput", "output_throughput", "duration_s"):
        assert r[k] > 0, (what, k, r[k])
    assert abs(r["total_token_throughput"] / r["output_throughput"] - (64 + 8) / 8) < 1e-6, what
    assert r["ttft_ms"]["mean"] <= r["e2e_ms"]["mean"], what
    assert r["arrivals"] == arrivals, (what, r["arrivals"])
    assert r["model"] == "m", (what, r["model"])

rate = json.load(open(d + "/rate.json"))
check(rate, "rate", "poisson")
assert rate["request_rate"] == 400 and rate["mode"] == "single"
conc = json.load(open(d + "/conc.json"))
check(conc, "concurrency", "closed-loop")
assert conc["concurrency"] == 4
cmp = json.load(open(d + "/cmp.json"))
assert cmp["mode"] == "compare"
check(cmp["on"], "compare on", "all-at-once")
check(cmp["off"], "compare off", "all-at-once")
assert cmp["on"]["swiftkv"] == "on" and cmp["off"]["swiftkv"] == "off"
assert abs(cmp["ratio"]["output_throughput"] - cmp["on"]["output_throughput"] / cmp["off"]["output_throughput"]) < 1e-9
seq = json.load(open(d + "/seq.json"))
assert seq["mode"] == "compare" and seq["servers"] == "sequential" and seq["input_len"] == 64
check(seq["on"], "sequential on", "all-at-once")
check(seq["off"], "sequential off", "all-at-once")
assert seq["on"]["swiftkv"] == "on" and seq["off"]["swiftkv"] == "off"
for k in ("output_throughput", "total_token_throughput"):
    assert abs(seq["ratio"][k] - seq["on"][k] / seq["off"][k]) < 1e-9, k
assert abs(seq["ratio"]["tpot_ms"]["p99"] - seq["on"]["tpot_ms"]["p99"] / seq["off"]["tpot_ms"]["p99"]) < 1e-9
sw = json.load(open(d + "/sweep.json"))
assert sw["mode"] == "sweep" and sw["prompt_kind"] == "text" and len(sw["runs"]) == 2
check(sw["runs"][0], "sweep 400", "poisson")
check(sw["runs"][1], "sweep inf", "all-at-once")
rows = open(d + "/sweep.csv").read().splitlines()
assert len(rows) == 3 and rows[0].startswith("swiftkv,request_rate,") and rows[2].split(",")[1] == "inf", rows
for f in ("sweep.svg", "sweep-csv.svg"):
    svg = xml.dom.minidom.parse(d + "/" + f)
    assert len(svg.getElementsByTagName("polyline")) == 4, f
print("serve-bench: every JSON complete and sane")
EOF
