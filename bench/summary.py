#!/usr/bin/env python3
"""Prints thecal-bench results against the SPEC section 7 targets.

Usage: summary.py [--markdown] RESULTS.json [OTHER.json ...]
Several files: side by side (e.g. host and guest); --markdown: a table for docs/performance.md."""
import json
import sys


def get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def fmt(v, unit="", nd=0):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:,.{nd}f}{unit}"
    return str(v)


def rows(r):
    res = r.get("results", {})
    out = []
    lat = get(res, "latency", "conditions", default={})
    for cond, c in lat.items():
        ref, dut, ratio = c["cyclictest"], c["thecald"], c["ratio_thecald_to_cyclictest"]
        out.append((f"latency {cond}: cyclictest p50/p99/p99.9/max us",
                    f"{ref['p50_us']:.0f}/{ref['p99_us']:.0f}/{ref['p999_us']:.0f}/{ref['max_us']:.0f}", ""))
        out.append((f"latency {cond}: thecald p50/p99/p99.9/max us",
                    f"{dut['p50_us']:.0f}/{dut['p99_us']:.0f}/{dut['p999_us']:.0f}/{dut['max_us']:.0f}", ""))
        out.append((f"latency {cond}: ratio p99.9 / max (<= 1.25)",
                    f"{ratio['p999']:.2f} / {ratio['max']:.2f}", "met" if c["target_met"] else "MISSED"))
        aa = c.get("ratio_cyclictest_b_to_a")
        if aa:
            band = c["aa_band"]
            out.append((f"latency {cond}: A/A cyclictest B/A p99.9 / max (noise band)",
                        f"{aa['p999']:.2f} / {aa['max']:.2f}",
                        "band > 1.25: run cannot decide" if max(band["p999"], band["max"]) > 1.25 else "band within 1.25"))
    ctl = get(res, "control")
    if ctl and "states" in ctl:
        p999 = ctl["worst_p999_ns"]
        out.append(("control step: worst state p99.9 / max ns (< 10 us)", f"{p999:.0f} / {ctl['worst_max_ns']:.0f}",
                    "met" if p999 < 10000 and ctl["heap_calls_total"] == 0 and ctl["page_faults_total"] == 0 else "MISSED"))
        out.append(("control step: heap calls / page faults", f"{ctl['heap_calls_total']} / {ctl['page_faults_total']}", ""))
    st = get(lat, "idle", "thecald_run", "control_step_max_ns")
    if st is not None:
        out.append(("loop's own ControlStepMaxNs (idle run)", fmt(st, " ns"), ""))
    db = get(res, "dbus", "results")
    if db:
        for who in ("thecald", "baseline"):
            pr, me = db[who]["property_read"], db[who]["method_call"]
            out.append((f"D-Bus {who}: property p50/p99 us; method p50/p99 us",
                        f"{pr['p50_us']:.0f}/{pr['p99_us']:.0f}; {me['p50_us']:.0f}/{me['p99_us']:.0f}",
                        ("met" if pr["p99_us"] < 1000 else "MISSED") if who == "thecald" else "reference"))
            out.append((f"D-Bus {who}: calls/s sequential / pipelined",
                        f"{db[who]['sequential_calls_per_s']:,.0f} / {db[who]['pipelined_calls_per_s']:,.0f}",
                        ("met" if max(db[who]['sequential_calls_per_s'], db[who]['pipelined_calls_per_s']) >= 5000 else "MISSED")
                        if who == "thecald" else "reference"))
    acc = get(res, "accuracy")
    if acc and "prescriptions" in acc:
        w = acc.get("worst_abs_counting_error_steps", acc["worst_abs_error_steps"])
        out.append(("accuracy S6: worst abs. counting error in steps (< 1); simulated days", f"{w:.3f}; {acc['days']:g} d",
                    "met" if w < 1 else "MISSED"))
        for name, p in acc["prescriptions"].items():
            out.append((f"accuracy {name}: delivered - prescription at the end (steps); dropped by the core",
                        f"{p['cumulative_error_steps']:.2f}; {p.get('core_steps_dropped', 0)}", ""))
        for name, p in acc["prescriptions"].items():
            t = p.get("trumpet_second_hour")
            if t:
                w2 = t["windows"][0]
                out.append((f"trumpet {name} (2nd h): mean error %, 2-min Ep max/min %",
                            f"{t['mean_error_percent']:.1f}, {w2['ep_max_percent']:.0f}/{w2['ep_min_percent']:.0f}", ""))
    su = get(res, "startup", "with_stored_prescription")
    if su and "p50_ms" in su:
        out.append(("start to READY=1 p50 / max ms (< 200)", f"{su['p50_ms']:.0f} / {su['max_ms']:.0f}",
                    "met" if su["max_ms"] < 200 else "MISSED"))
    fp = get(res, "footprint")
    if fp and "vm_rss_kib" in fp:
        out.append(("RSS / HWM MiB (< 16)", f"{fp['vm_rss_kib']/1024:.1f} / {fp['vm_hwm_kib']/1024:.1f}",
                    "met" if fp["vm_hwm_kib"] < 16 * 1024 else "MISSED"))
        out.append(("CPU % of one core at 1 kHz (< 2)", f"{fp['cpu_percent_of_one_core']:.2f}",
                    "met" if fp["cpu_percent_of_one_core"] < 2 else "MISSED"))
        j = fp.get("journal", {})
        sim = j.get("steady_basal_simulated")
        if j.get("status") == "measured" and sim and sim.get("simulated_minutes", 0) > 0:
            out.append(("journal fsyncs/min at steady basal (<= 1); simulated minutes",
                        f"{sim['per_simulated_minute']:.2f}; {sim['simulated_minutes']:.0f} min",
                        "met" if sim["per_simulated_minute"] <= 1 else "MISSED"))
            out.append(("journal fsyncs in the 1x window (real minutes)",
                        f"{j['journal_writes_in_window']} in {fp['window_s']/60:.1f} min", ""))
        else:
            out.append(("journal fsyncs/min at steady basal (<= 1)",
                        f"{j.get('per_minute', 0):.2f}" if j.get("status") == "measured" else "pending",
                        "" if j.get("status") != "measured" else ("met" if j["per_minute"] <= 1 else "MISSED")))
    pv = get(res, "preview")
    if pv and "days" in pv:
        out.append(("preview: 90 days of flex with every bolus, s (< 1)", f"{pv['ninety_days_s']:.3f}",
                    "met" if pv["target_met"] else "MISSED"))
        out.append(("preview: 1 / 30 / 180 days, s",
                    " / ".join(f"{pv['days'][d]['seconds']:.3f}" for d in ("1", "30", "180")), ""))
    rec = get(res, "recorder")
    if rec and "size" in rec:
        out.append(("recorder bytes per day, steady basal + a few acts (<= 1 MiB)",
                    f"{rec['size']['bytes_per_day']:,.0f}", "met" if rec["size"]["target_met"] else "MISSED"))
        out.append(("recorder: replay of a 30-day recording s (< 10)", f"{rec['replay']['seconds']:.2f}",
                    "met" if rec["replay"]["target_met"] and rec["replay"]["matched"] else "MISSED"))
    for name, sec in res.items():
        if isinstance(sec, dict) and "error" in sec:
            out.append((f"{name}: FAILED", sec["error"][:60], "error"))
    return out


def main(argv):
    markdown = "--markdown" in argv
    argv = [a for a in argv if a != "--markdown"]
    runs = [json.load(open(f)) for f in argv[1:]]
    if markdown:
        tables = [rows(r) for r in runs]
        labels = [get(r, "environment", "label", default="?") for r in runs]
        keys = []
        for t in tables:
            for k, _, _ in t:
                if k not in keys:
                    keys.append(k)
        cols = []
        for l in labels:
            cols += [l, "target"]
        print("| measure | " + " | ".join(cols) + " |")
        print("|---|" + "---|---|" * len(labels))
        for k in keys:
            cells = []
            for t in tables:
                m = {kk: (v, st) for kk, v, st in t}
                v, st = m.get(k, ("-", ""))
                cells.append(f"{v} | {st}")
            print(f"| {k} | " + " | ".join(cells) + " |")
        return
    tables = [rows(r) for r in runs]
    labels = [get(r, "environment", "label", default="?") for r in runs]
    w = max(len(k) for t in tables for k, _, _ in t) if tables and tables[0] else 40
    print(f"{'':{w}}  " + "  ".join(f"{l:>24} {'':6}" for l in labels))
    keys = []
    for t in tables:
        for k, _, _ in t:
            if k not in keys:
                keys.append(k)
    for k in keys:
        cells = []
        for t in tables:
            m = {kk: (v, s) for kk, v, s in t}
            v, s = m.get(k, ("-", ""))
            cells.append(f"{v:>24} {s:6}")
        print(f"{k:{w}}  " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv)
