#!/bin/bash
# The SPEC section 7 benchmarks in one command: installs what it needs (apt-get: rt-tests,
# stress-ng, gnuplot-nox), builds, runs thecal-bench (every target against its reference,
# in one run), writes the results (JSON) and the plots (SVG, gnuplot), prints a summary.
#
#   bench/run.sh [--full] [--out FILE] [--label TEXT] [--no-build] [--build-dir DIR]
#                [--no-plots] [-- thecal-bench options...]
#
#   (default)   the short run, as ctest -L bench runs it: a few minutes
#   --full      the long run for published figures (about 30 minutes)
#   --out FILE  results file (default bench/results/latest.json); plots go beside it
#   --guest     then run the same benchmark in the PREEMPT_RT guest under qemu TCG
#               (tests/system/bench-rt-guest.sh; results in DIR-OF-OUT/guest/, printed
#               next to the host's, labelled as software emulation)
# Run it as root (SCHED_FIFO, mlockall, packages).  On a Raspberry Pi with a PREEMPT_RT
# kernel the same command works (see docs/performance.md: use --cpu 3 on a 4-core Pi).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
OUT=$SRC/bench/results/latest.json
BUILD=$SRC/build/default
FULL=0
GUEST=0
BUILD_IT=1
PLOTS=1
LABEL=host
EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --full) FULL=1; shift ;;
    --guest) GUEST=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --no-build) BUILD_IT=0; shift ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --no-plots) PLOTS=0; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root (SCHED_FIFO, mlockall, apt-get)" >&2; exit 2; }
log() { echo "bench/run.sh: $*" >&2; }

# ---- tools ------------------------------------------------------------------------------------
need=()
command -v cyclictest >/dev/null || need+=(rt-tests)
command -v stress-ng >/dev/null || need+=(stress-ng)
[ $PLOTS = 0 ] || command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "${need[@]}" >/dev/null; }
fi

# ---- build --------------------------------------------------------------------------------
if [ $BUILD_IT = 1 ]; then
  log "building (nice)"
  (cd "$SRC" && cmake --preset default >/dev/null && nice cmake --build "$BUILD" -j "$(nproc)" \
     --target thecald thecal-bench bench-dbus-baseline >/dev/null)
fi
for b in daemon/thecald bench/thecal-bench bench/bench-dbus-baseline; do
  [ -x "$BUILD/$b" ] || { echo "bench/run.sh: $BUILD/$b is missing (build it, or drop --no-build)" >&2; exit 2; }
done

# ---- run ----------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
if [ $FULL = 1 ]; then
  ARGS=(--seconds 180 --rounds 18 --dbus-calls 20000 --dbus-seconds 10 --footprint-seconds 60 --starts 20 --ticks 200000 --accuracy-days 30)
else
  ARGS=(--seconds 10 --rounds 2 --dbus-calls 3000 --dbus-seconds 3 --footprint-seconds 10 --starts 5 --ticks 50000 --accuracy-days 30)
fi
rc=0
OTHERS=$(ps -eo pid,ni,pcpu,comm --sort=-pcpu | awk 'NR>1 && $3>5 {printf "%s(%s%%) ", $4, $3}' | head -c 400)
log "running thecal-bench ($([ $FULL = 1 ] && echo full || echo short)); busy processes now: ${OTHERS:-none}"
"$BUILD/bench/thecal-bench" --share "$SRC" --thecald "$BUILD/daemon/thecald" --baseline "$BUILD/bench/bench-dbus-baseline" \
  --out "$OUT" --label "$LABEL" --note "run: $([ $FULL = 1 ] && echo full || echo short); other busy processes at start: ${OTHERS:-none}" \
  "${ARGS[@]}" "${EXTRA[@]}" || rc=$?

# ---- plots and summary --------------------------------------------------------------------------
if [ $PLOTS = 1 ]; then
  gnuplot -e "dir='$(dirname "$OUT")'; label='$LABEL'" "$HERE/plots.gp" 2>"$(dirname "$OUT")/gnuplot.log" ||
    { log "gnuplot failed:"; cat "$(dirname "$OUT")/gnuplot.log" >&2; exit 1; }
  log "plots: $(cd "$(dirname "$OUT")" && ls ./*.svg | tr '\n' ' ')"
fi
python3 "$HERE/summary.py" "$OUT"
if [ $GUEST = 1 ]; then
  [ $BUILD_IT = 0 ] || (cd "$SRC" && nice cmake --build "$BUILD" -j "$(nproc)" --target thecalctl >/dev/null)
  "$SRC/tests/system/bench-rt-guest.sh" --build-dir "$BUILD" --out-dir "$(dirname "$OUT")/guest" --host "$OUT" || rc=$?
fi
exit $rc
