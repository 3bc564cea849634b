#!/bin/bash
# Runs thecal-bench end to end inside the gpio-sim rig's guest: Debian's PREEMPT_RT kernel
# under qemu TCG (issue 10, item 3).  The guest is the rig's (gpio-sim-rig.sh, same kernel,
# cache and initramfs), with the benchmark added and its own /init (THECAL_RIG_HOOK).
# Results: OUT_DIR/latest.json and the plots, labelled "guest"; printed next to the host's
# results if given.  Software emulation: these latency figures say nothing about a board.
#
#   tests/system/bench-rt-guest.sh [--build-dir DIR] [--out-dir DIR] [--host FILE.json]
#                                  [-- thecal-bench options for the guest]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$SRC/build/default
OUTDIR=$SRC/bench/results/guest
HOST_JSON=
# Short: TCG is 10-50x slower than the host.
GUEST_ARGS="--seconds 6 --rounds 2 --stress '--cpu 2 --io 1 --vm 1 --vm-bytes 64M' --dbus-calls 500 --dbus-seconds 2 --footprint-seconds 5 --starts 3 --ticks 5000 --accuracy-days 7"
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD=$2; shift 2 ;;
    --out-dir) OUTDIR=$2; shift 2 ;;
    --host) HOST_JSON=$2; shift 2 ;;
    --) shift; GUEST_ARGS="$*"; break ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bench-rt-guest: unknown argument $1" >&2; exit 2 ;;
  esac
done
for b in daemon/thecald thecalctl/thecalctl bench/thecal-bench bench/bench-dbus-baseline; do
  [ -x "$BUILD/$b" ] || { echo "bench-rt-guest: build $BUILD/$b first" >&2; exit 2; }
done
need=()
command -v cyclictest >/dev/null || need+=(rt-tests)
command -v stress-ng >/dev/null || need+=(stress-ng)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "${need[@]}" >/dev/null; }
fi
# The guest's /init reads its thecal-bench options from a file (shell words, eval there).
export THECAL_RIG_HOOK=$HERE/bench-rt-guest-hook.sh
export THECAL_BENCH_BIN=$BUILD/bench
export THECAL_BENCH_GUEST_INIT=$HERE/bench-rt-guest-init.sh
export THECAL_BENCH_GUEST_ARGS=$GUEST_ARGS
export THECAL_RIG_TIMEOUT=${THECAL_RIG_TIMEOUT:-1800}
LOG=$(mktemp /tmp/thecal-bench-guest.XXXXXX)
set +e
"$HERE/gpio-sim-rig.sh" --thecald "$BUILD/daemon/thecald" --thecalctl "$BUILD/thecalctl/thecalctl" --keep 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
W=$(sed -n 's/^gpio-sim-rig: kept //p' "$LOG" | tail -n1)
rm -f "$LOG"
[ -n "$W" ] && [ -f "$W/console.log" ] || { echo "bench-rt-guest: no console log (rig exit $rc)" >&2; exit 1; }
mkdir -p "$OUTDIR"
tr -d '\r' < "$W/console.log" | awk -v dir="$OUTDIR" '
  /^BENCHFILE / { f = dir "/" $2; printf "" > f; next }
  /^BENCHEND/ { if (f) close(f); f = ""; next }
  f { print >> f }'
grep -a '^BENCHLOG' "$W/console.log" | tail -n 5 || true
rm -rf "$W"
[ -s "$OUTDIR/latest.json" ] || { echo "bench-rt-guest: the guest wrote no results" >&2; exit 1; }
gnuplot -e "dir='$OUTDIR'; label='guest: qemu TCG, PREEMPT_RT'" "$SRC/bench/plots.gp" 2>/dev/null || echo "bench-rt-guest: gnuplot failed" >&2
echo "== thecal-bench in the PREEMPT_RT guest (software emulation: no board figures)"
if [ -n "$HOST_JSON" ] && [ -f "$HOST_JSON" ]; then python3 "$SRC/bench/summary.py" "$HOST_JSON" "$OUTDIR/latest.json"
else python3 "$SRC/bench/summary.py" "$OUTDIR/latest.json"; fi
exit $rc
