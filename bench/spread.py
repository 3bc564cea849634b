#!/usr/bin/env python3
"""The spread of repeated full benchmark runs (issue 14 item 11): for each latency condition,
every run's thecald/cyclictest ratio beside that run's A/A band (cyclictest B against A, in
the same interleaved rounds), and the range over the runs; then the other section-7 figures
run by run.  A ratio is read against its own run's band: inside the band it is the machine's
noise, outside the band and above 1.25x it is thecald's.

Usage: spread.py RUN1.json RUN2.json RUN3.json [...]"""
import json
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["results"]


def verdict(ratio, band, target=1.25):
    if band > target:  # the machine's own noise is wider than the target
        return "**missed** (beyond the band)" if ratio > band else "undecided (band > 1.25×)"
    return "met" if ratio <= target else "**missed**"


def span(values, nd=2):
    return f"{min(values):.{nd}f}–{max(values):.{nd}f}"


def main(paths):
    runs = [load(p) for p in paths]
    names = [f"run {i + 1}" for i in range(len(runs))]
    conds = list(runs[0]["latency"]["conditions"])
    print("| condition | run | cyclictest A p99.9 / max µs | thecald p99.9 / max µs | cyclictest B p99.9 / max µs "
          "| thecald/A p99.9 | A/A band p99.9 | thecald/A max | A/A band max | reading (p99.9; max) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cond in conds:
        r999, b999, rmax, bmax = [], [], [], []
        for name, r in zip(names, runs):
            c = r["latency"]["conditions"][cond]
            a, t, b = c["cyclictest"], c["thecald"], c["cyclictest_b"]
            ratio, band = c["ratio_thecald_to_cyclictest"], c["aa_band"]
            r999.append(ratio["p999"]); b999.append(band["p999"])
            rmax.append(ratio["max"]); bmax.append(band["max"])
            print(f"| {cond} | {name} | {a['p999_us']:,} / {a['max_us']:,} | {t['p999_us']:,} / {t['max_us']:,} | "
                  f"{b['p999_us']:,} / {b['max_us']:,} | {ratio['p999']:.2f} | {band['p999']:.2f} | "
                  f"{ratio['max']:.2f} | {band['max']:.2f} | {verdict(ratio['p999'], band['p999'])}; "
                  f"{verdict(ratio['max'], band['max'])} |")
        print(f"| {cond} | **spread over {len(runs)} runs** |  |  |  | {span(r999)} | {span(b999)} | "
              f"{span(rmax)} | {span(bmax)} |  |")
    print()
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(runs))

    def row(label, fn):
        vals = []
        for r in runs:
            try:
                vals.append(fn(r))
            except (KeyError, TypeError):
                vals.append("–")
        print(f"| {label} | " + " | ".join(vals) + " |")

    row("thecald overruns idle / stress / flood", lambda r: " / ".join(
        str(r["latency"]["conditions"][c]["thecald_run"]["overruns"]) for c in conds))
    row("D-Bus Get p99 µs, thecald / baseline", lambda r: (
        f"{r['dbus']['results']['thecald']['property_read']['p99_us']:,.0f} / "
        f"{r['dbus']['results']['baseline']['property_read']['p99_us']:,.0f}"))
    row("start to READY=1 p50 / max ms", lambda r: (
        f"{r['startup']['with_stored_prescription']['p50_ms']:.1f} / "
        f"{r['startup']['with_stored_prescription']['max_ms']:.1f}"))
    row("CPU % of one core (cyclictest)", lambda r: f"{r['footprint']['cpu_percent_of_one_core']:.2f}")
    row("VmRSS MiB", lambda r: f"{r['footprint']['vm_rss_kib'] / 1024:.1f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
