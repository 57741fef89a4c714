#!/bin/sh
# test-bench.sh: skv-bench prefill and decode run end to end on the CPU backend with the tiny
# model and write well-formed JSON (their speed is measured on a GPU by scripts/gpu-check, never
# asserted here).   test-bench.sh SKV_BENCH SKV_MKMODEL
set -eu
bench=$1
mkmodel=$2
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$mkmodel" --preset tiny --swiftkv-layers 2 "$d/m" >/dev/null
"$bench" prefill --model "$d/m" --backend cpu --threads 2 --lengths 16,40 --repeat 2 --warmup 1 --json "$d/p.json"
"$bench" decode --model "$d/m" --backend cpu --threads 2 --batch 1,3 --context 20 --steps 3 --warmup 1 \
  --json "$d/d.json"
for f in "$d/p.json" "$d/d.json"; do
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"]; assert len(r) == 4, r' "$f"
done
