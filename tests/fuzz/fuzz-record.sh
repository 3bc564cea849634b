#!/bin/bash
# Runs one libFuzzer target for a given time and records the run in the repository:
#   tests/fuzz/fuzz-record.sh TARGET SECONDS [extra libFuzzer options...]
# TARGET: config_fuzzer (every loader), prescription_fuzzer, drug_library_fuzzer,
# daemon_config_fuzzer, therapy_document_fuzzer (the ImportTherapy document; seeded by
# therapy_document_seed with a real export).  Builds the clang fuzz tree (preset `fuzz`, build/fuzz), seeds the
# target's own corpus (build/fuzz/corpus-TARGET, kept between runs) from the examples, the
# shipped drug library and tests/fuzz/seeds, runs it under nice, and appends one row to
# tests/fuzz/records.md: date, commit, target, seconds, executions, execs/s, coverage
# (libFuzzer's cov: edges and ft: features at the end), corpus size, peak RSS, crashes
# (crash-, leak-, timeout- and oom- artifacts this run left).  The full log goes to
# build/fuzz/TARGET-DATE.log.  Exit status: libFuzzer's (non-zero on any finding).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
target=$1
seconds=$2
shift 2
case $target in
  config_fuzzer|prescription_fuzzer|drug_library_fuzzer|daemon_config_fuzzer|therapy_document_fuzzer) ;;
  *) echo "fuzz-record.sh: unknown target $target" >&2; exit 2 ;;
esac
case $seconds in ''|*[!0-9]*) echo "fuzz-record.sh: SECONDS must be a whole number, got $seconds" >&2; exit 2 ;; esac
build="$src/build/fuzz"
cd "$src"
[ -f "$build/build.ninja" ] || nice cmake --preset fuzz >/dev/null
nice cmake --build "$build" --target "$target" -j2 >/dev/null
corpus="$build/corpus-$target"
mkdir -p "$corpus"
dict=(-dict="$src/tests/fuzz/config.dict")
if [ "$target" = therapy_document_fuzzer ]; then
  nice cmake --build "$build" --target therapy_document_seed -j2 >/dev/null
  "$build/tests/fuzz/therapy_document_seed" "$src" "$corpus" >&2
  dict=()
else
  for f in "$src"/examples/*.yaml "$src"/config/drugs.yaml "$src"/tests/fuzz/seeds/*; do
    [ -f "$f" ] && cp "$f" "$corpus/seed-$(basename "$f")"
  done
fi
stamp=$(date -u +%Y-%m-%dT%H:%MZ)
# The commit the target was built from (taken now: the tree may move on during a long run).
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$src" diff --quiet HEAD -- config io control app tests/fuzz 2>/dev/null || commit="$commit+changes"
log="$build/$target-$(date -u +%Y%m%dT%H%M).log"
artifacts="$build/artifacts-$target-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$artifacts"
rc=0
nice "$build/tests/fuzz/$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  "${dict[@]}" -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" "$corpus" \
  > "$log" 2>&1 || rc=$?
stat() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$log" | tail -n 1; }
last=$(grep -E '^#[0-9]+' "$log" | grep -E ' cov: ' | tail -n 1 || true)
cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
found=$(find "$artifacts" -type f | wc -l)
records="$src/tests/fuzz/records.md"
if [ ! -f "$records" ]; then
  cat > "$records" <<'EOF'
# Fuzzing records

One row per recorded run of `tests/fuzz/fuzz-record.sh TARGET SECONDS` (libFuzzer, clang 14,
ASan + UBSan, the `fuzz` preset). `cov` is libFuzzer's count of covered edges and `ft` its
features at the end of the run; `corpus` the inputs kept. A row with crashes > 0 names a
finding: its input is in build/fuzz/artifacts-TARGET-* on the machine that ran it, and it
becomes a regression seed in tests/fuzz/seeds/ with its fix. The machine is a shared 2-core
host, the runs `nice`d: executions per second vary with the load.

| date (UTC) | commit | target | seconds | executions | execs/s | cov | ft | corpus | peak RSS MB | crashes | exit |
|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
fi
echo "| $stamp | $commit | $target | $seconds | $(stat number_of_executed_units) | $(stat average_exec_per_sec) | ${cov:-?} | ${ft:-?} | ${corp:-?} | $(stat peak_rss_mb) | $found | $rc |" >> "$records"
tail -n 1 "$records"
[ "$found" = 0 ] || { echo "fuzz-record.sh: $found finding(s) in $artifacts" >&2; ls "$artifacts" >&2; }
exit $rc
