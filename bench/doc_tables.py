#!/usr/bin/env python3
"""Prints the measured tables of docs/performance.md from a thecal-bench results file, so
the document's figures are the run's, not retyped.

Usage: doc_tables.py RESULTS.json [latency|control|dbus|footprint|preview|recorder|all]"""
import json
import sys


def n(v, nd=0):
    return f"{v:,.{nd}f}"


def latency(r):
    lat = r["results"]["latency"]["conditions"]
    print("| condition | who | p50 µs | p99 µs | p99.9 µs | max µs | cycles | ratio to cyclictest A | target (≤ 1.25×) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cond, c in lat.items():
        ref, dut, ratio, run = c["cyclictest"], c["thecald"], c["ratio_thecald_to_cyclictest"], c["thecald_run"]
        print(f"| {cond} | cyclictest | {n(ref['p50_us'])} | {n(ref['p99_us'])} | {n(ref['p999_us'])} | "
              f"{n(ref['max_us'])} | {n(ref['samples'])} |  |  |")
        extra = f"overruns {run['overruns']}"
        if cond == "dbus_flood":
            extra += (f"; flood {n(run.get('flood_calls_per_s', 0))} calls/s on thecald, "
                      f"{n(c['cyclictest_run'].get('flood_calls_per_s', 0))} on the baseline")
        met = "met" if c["target_met"] else "**missed**"
        aa = c.get("ratio_cyclictest_b_to_a")
        if aa:  # the A/A control: cyclictest's second turns (B) against its first (A)
            b = c["cyclictest_b"]
            band = c["aa_band"]
            verdict = ("band wider than 1.25×: this run cannot decide the target"
                       if max(band["p999"], band["max"]) > 1.25 else "A/A band within 1.25×")
            print(f"| {cond} | cyclictest B (A/A) | {n(b['p50_us'])} | {n(b['p99_us'])} | {n(b['p999_us'])} | "
                  f"{n(b['max_us'])} | {n(b['samples'])} | p50 {aa['p50']:.2f}, p99 {aa['p99']:.2f}, "
                  f"**p99.9 {aa['p999']:.2f}, max {aa['max']:.2f}** | {verdict} |")
        print(f"| {cond} | thecald | {n(dut['p50_us'])} | {n(dut['p99_us'])} | {n(dut['p999_us'])} | "
              f"{n(dut['max_us'])} | {n(dut['samples'])} | p50 {ratio['p50']:.2f}, p99 {ratio['p99']:.2f}, "
              f"**p99.9 {ratio['p999']:.2f}, max {ratio['max']:.2f}** | {met}; {extra} |")


def control(r):
    ctl = r["results"]["control"]
    print("| state | tick p50 ns | p99 ns | p99.9 ns | max ns | whole cycle p99.9 ns | Google Benchmark cycle median ns | heap calls | page faults |")
    print("|---|---|---|---|---|---|---|---|---|")
    gb = {}  # state -> median real time (ns) of Google Benchmark's whole-cycle runs
    for b in ctl.get("google_benchmark", {}).get("benchmarks", []):
        parts = b.get("run_name", "").split("/")
        if b.get("aggregate_name") == "median" and len(parts) > 1:
            gb[parts[1]] = b.get("real_time")
    for state, s in ctl["states"].items():
        t, c = s["tick"], s["cycle_read_tick_write"]
        med = gb.get(state)
        print(f"| {state} | {n(t['p50_ns'])} | {n(t['p99_ns'])} | {n(t['p999_ns'])} | {n(t['max_ns'])} | "
              f"{n(c['p999_ns'])} | {'-' if med is None else n(med)} | {s['heap_calls']} | "
              f"{s['minor_faults'] + s['major_faults']} |")


def dbus(r):
    db = r["results"]["dbus"]["results"]
    print("| server | Get p50 µs | Get p99 µs | Get p99.9 µs | Get max µs | GetEvents p50 µs | GetEvents p99 µs | calls/s sequential | calls/s pipelined (16) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for who in ("thecald", "baseline"):
        p, m = db[who]["property_read"], db[who]["method_call"]
        print(f"| {who} | {n(p['p50_us'])} | {n(p['p99_us'])} | {n(p['p999_us'])} | {n(p['max_us'])} | "
              f"{n(m['p50_us'])} | {n(m['p99_us'])} | {n(db[who]['sequential_calls_per_s'])} | "
              f"{n(db[who]['pipelined_calls_per_s'])} |")


def footprint(r):
    res = r["results"]
    su = res["startup"]
    f = res["footprint"]
    j = f["journal"]
    print("| measure | measured | target |")
    print("|---|---|---|")
    s, a = su["with_stored_prescription"], su["all_starts_of_this_run"]
    print(f"| start to READY=1 (stored prescription, {s['samples']} runs) | p50 {s['p50_ms']:.1f} ms, max {s['max_ms']:.1f} ms | < 200 ms |")
    print(f"| start to READY=1 (all {a['samples']} starts of the run) | p50 {a['p50_ms']:.1f} ms, max {a['max_ms']:.1f} ms |  |")
    print(f"| VmRSS / VmHWM (VmLck) | {f['vm_rss_kib']/1024:.1f} / {f['vm_hwm_kib']/1024:.1f} MiB "
          f"({f['vm_lck_kib']/1024:.1f} MiB locked) | < 16 MiB |")
    print(f"| CPU, whole thecald, 1 kHz loop, {f['window_s']:.0f} s | {f['cpu_percent_of_one_core']:.2f} % of one core "
          f"(clock ticks: {f['cpu_percent_from_stat_ticks']:.2f} %) | < 2 % |")
    for name, v in f["cpu_percent_per_thread"].items():
        print(f"|   thread {name} | {v:.2f} % |  |")
    print(f"| reference: cyclictest, same priority, period, CPU | {f['reference_cyclictest']['cpu_percent_of_one_core']:.2f} % |  |")
    sim = j.get("steady_basal_simulated")
    if sim:
        print(f"| journal fsyncs at steady basal, time scale {sim['time_scale']:g} | {sim['journal_writes']} in "
              f"{sim['simulated_minutes']:,.0f} simulated minutes = {sim['per_simulated_minute']:.4f}/min | ≤ 1/min |")
    print(f"| journal fsyncs at time scale 1 | {j['journal_writes_in_window']} in {f['window_s']:.0f} s "
          f"({j['journal_writes_after_start']} while it was programmed: load, refill, prime, start) |  |")


def preview(r):
    pv = r["results"]["preview"]
    print("| simulated days | wall time s | fast-forward iterations | µs per iteration | patient boluses | events | buckets | simulated 1 ms cycles | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d, x in pv["days"].items():
        target = ("< 1 s: " + ("met" if pv["target_met"] else "**missed**")) if d == "90" else ""
        print(f"| {d} | {x['seconds']:.3f} | {n(x['iterations'])} | {x['us_per_iteration']:.2f} | "
              f"{n(x['patient_boluses'])} | {n(x['events'])} | {n(x['buckets'])} | {n(x['simulated_cycles'])} | {target} |")


def recorder(r):
    rec = r["results"]["recorder"]
    sz, rp = rec["size"], rec["replay"]
    print("| measure | measured | target |")
    print("|---|---|---|")
    print(f"| recorder bytes per day of pump time ({sz['days']:.0f} days, {n(sz['records'])} records) | "
          f"{n(sz['bytes_per_day'])} B ({sz['bytes_per_day'] / 1024:.1f} KiB); first day {n(sz['bytes_first_day'])} B | ≤ 1 MiB |")
    print(f"| replay of the {sz['days']:.0f}-day recording at 1 kHz | {rp['seconds']:.2f} s: {n(rp['cycles'])} cycles, "
          f"{n(rp['computed_cycles'])} computed, {n(rp['steps'])} steps, {rp['events_checked']} events checked, "
          f"{'match' if rp['matched'] else '**diverged**'} | < 10 s |")
    print(f"| recorder fsyncs | {rec['fsyncs']} | none beyond S7's budget |")


def main(argv):
    r = json.load(open(argv[1]))
    which = argv[2] if len(argv) > 2 else "all"
    for name, fn in (("latency", latency), ("control", control), ("dbus", dbus), ("footprint", footprint),
                     ("preview", preview), ("recorder", recorder)):
        if which in (name, "all"):
            if which == "all":
                print(f"\n### {name}\n")
            fn(r)


if __name__ == "__main__":
    main(sys.argv)
