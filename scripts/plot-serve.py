#!/usr/bin/env python3
"""plot-serve.py: TTFT and TPOT against request rate, from `skv-bench serve --sweep`, as an SVG.

    scripts/plot-serve.py SWEEP.json|SWEEP.csv [-o OUT.svg] [--title TEXT] [--log-y]

Reads the JSON (--json) or the CSV (--csv) of a sweep, with or without --compare, and draws two
panels side by side: TTFT and TPOT (ms) against the offered request rate, p50 solid and p99
dashed, one colour per server (swiftkv on / off). The rate "inf" (all at once) sits at the right
edge. Python's standard library only: the SVG is written by hand, no matplotlib.
"""
import argparse
import csv
import html
import json
import math
import sys

COLORS = {"on": "#1f77b4", "off": "#d62728", "": "#1f77b4"}
W, H = 980, 450  # whole picture
PW, PH = 400, 300  # one panel's plot area
ML, MT = 70, 80  # left and top margins of the first panel
GAP = 90  # between the panels


def load(path):
    """Rows of {label, rate (None = inf), ttft_p50, ttft_p99, tpot_p50, tpot_p99}, and a subtitle."""
    rows, sub = [], ""
    if path.endswith(".csv"):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if not r["request_rate"]:
                    continue  # a closed-loop run has no rate
                rate = None if r["request_rate"] == "inf" else float(r["request_rate"])
                rows.append({"label": r["swiftkv"], "rate": rate,
                             **{k: float(r[k + "_ms"]) for k in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99")}})
        return rows, sub
    with open(path) as f:
        d = json.load(f)
    runs = d.get("runs")
    if runs is None:  # a single run or a comparison: one point per server
        runs = [d["on"], d["off"]] if "on" in d else [d]
    for r in runs:
        if r.get("arrivals") == "closed-loop":
            continue
        rows.append({"label": r.get("swiftkv", ""), "rate": r.get("request_rate"),
                     "ttft_p50": r["ttft_ms"]["p50"], "ttft_p99": r["ttft_ms"]["p99"],
                     "tpot_p50": r["tpot_ms"]["p50"], "tpot_p99": r["tpot_ms"]["p99"]})
    model = runs[0].get("model", "") if runs else ""
    sub = "%s, %s in / %s out, %s prompts per rate" % (model, d.get("input_len", "?"), d.get("output_len", "?"),
                                                     d.get("num_prompts", "?"))
    return rows, sub


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    t = math.floor(lo / step) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(round(t, 10))
        t += step
    return out


def fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 100 or v == int(v):
        return "%d" % v
    return ("%.3g" % v)


def panel(out, x0, y0, title, key, rows, xs, xlabels, log_y):
    """One panel: axes, grid, two lines per server."""
    finite = [x for x in xs if x is not None]
    xmax = max(finite) if finite else 1.0
    inf_x = xmax * 1.2 if finite else 1.0
    xpos = lambda r: inf_x if r is None else r
    vals = [r[key + s] for r in rows for s in ("_p50", "_p99") if r[key + s] > 0]
    if log_y:
        lo = 10 ** math.floor(math.log10(min(vals))) if vals else 0.1
        hi = 10 ** math.ceil(math.log10(max(vals))) if vals else 1
        yt = []
        t = lo
        while t <= hi * 1.0001:
            yt.append(t)
            t *= 10
        ymap = lambda v: y0 + PH - (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * PH
    else:
        hi = max(vals) * 1.08 if vals else 1
        yt = nice_ticks(0, hi)
        hi = yt[-1]
        ymap = lambda v: y0 + PH - v / hi * PH
    xt_hi = inf_x * 1.04
    xmap = lambda v: x0 + v / xt_hi * PW
    out.append('<text x="%d" y="%d" class="t">%s</text>' % (x0 + PW / 2, y0 - 12, html.escape(title)))
    for t in yt:
        y = ymap(t)
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="g"/>' % (x0, y, x0 + PW, y))
        out.append('<text x="%d" y="%.1f" class="yl">%s</text>' % (x0 - 6, y + 4, fmt(t)))
    for x, lab in zip(xs, xlabels):
        px = xmap(xpos(x))
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="g"/>' % (px, y0, px, y0 + PH))
        out.append('<text x="%.1f" y="%d" class="xl">%s</text>' % (px, y0 + PH + 16, html.escape(lab)))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" class="f"/>' % (x0, y0, PW, PH))
    out.append('<text x="%d" y="%d" class="xl">request rate (req/s)</text>' % (x0 + PW / 2, y0 + PH + 36))
    out.append('<text transform="translate(%d %d) rotate(-90)" class="xl">ms</text>' % (x0 - 48, y0 + PH / 2))
    for label in sorted({r["label"] for r in rows}, key=lambda s: (s != "on", s)):
        pts = sorted((r for r in rows if r["label"] == label), key=lambda r: xpos(r["rate"]))
        for suffix, dash in (("_p50", ""), ("_p99", ' stroke-dasharray="6 4"')):
            path = " ".join("%.1f,%.1f" % (xmap(xpos(r["rate"])), ymap(r[key + suffix])) for r in pts)
            out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>'
                       % (path, COLORS.get(label, "#2ca02c"), dash))
            for r in pts:
                out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>'
                           % (xmap(xpos(r["rate"])), ymap(r[key + suffix]), COLORS.get(label, "#2ca02c")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="skv-bench serve --sweep output: .json or .csv")
    ap.add_argument("-o", "--output", help="SVG file (default: the input's name with .svg)")
    ap.add_argument("--title", default="skv-bench serve: latency against request rate")
    ap.add_argument("--log-y", action="store_true", help="logarithmic latency axes")
    a = ap.parse_args()
    rows, sub = load(a.input)
    if not rows:
        sys.exit("plot-serve: no open-loop runs (with a request rate) in %s" % a.input)
    xs = sorted({r["rate"] for r in rows}, key=lambda r: math.inf if r is None else r)
    xlabels = ["inf" if x is None else fmt(x) for x in xs]
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">' % (W, H, W, H),
           "<style>text{font-family:sans-serif;font-size:12px;fill:#222}.t{font-size:14px;text-anchor:middle;"
           "font-weight:bold}.h{font-size:15px;font-weight:bold}.xl{text-anchor:middle}.yl{text-anchor:end}"
           ".g{stroke:#ddd;stroke-width:1}.f{fill:none;stroke:#444;stroke-width:1}</style>",
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="20" class="h">%s</text>' % (ML, html.escape(a.title)),
           '<text x="%d" y="38">%s</text>' % (ML, html.escape(sub))]
    panel(out, ML, MT, "TTFT (ms)", "ttft", rows, xs, xlabels, a.log_y)
    panel(out, ML + PW + GAP, MT, "TPOT (ms)", "tpot", rows, xs, xlabels, a.log_y)
    # legend
    lx, ly = ML, MT + PH + 56
    labels = sorted({r["label"] for r in rows}, key=lambda s: (s != "on", s))
    for label in labels:
        c = COLORS.get(label, "#2ca02c")
        name = "swiftkv %s" % label if label else "skvd"
        for suffix, dash in (("p50", ""), ("p99", ' stroke-dasharray="6 4"')):
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'
                       % (lx, ly, lx + 30, ly, c, dash))
            out.append('<text x="%d" y="%d">%s %s</text>' % (lx + 36, ly + 4, html.escape(name), suffix))
            lx += 170
    out.append("</svg>")
    dst = a.output or a.input.rsplit(".", 1)[0] + ".svg"
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")
    print("plot-serve: wrote %s (%d points)" % (dst, len(rows)))


if __name__ == "__main__":
    main()
