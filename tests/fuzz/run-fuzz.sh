#!/bin/sh
# Builds the libFuzzer target with clang (CMake preset `fuzz`, into build/fuzz) and runs it
# for a bounded time over the seed corpus (every example and the shipped drug library).
#   tests/fuzz/run-fuzz.sh [SECONDS] [extra libFuzzer options...]
# Needs clang-14 and libclang-rt-14-dev (Debian 12).  Exit status: libFuzzer's (non-zero
# on a crash, a leak, a timeout or a sanitizer report).
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
build="$src/build/fuzz"
cd "$src"
if [ ! -f "$build/build.ninja" ]; then
  nice cmake --preset fuzz >/dev/null
fi
nice cmake --build "$build" --target config_fuzzer -j2
corpus="$build/fuzz-corpus"
mkdir -p "$corpus"
for f in "$src"/examples/*.yaml "$src"/config/drugs.yaml "$src"/tests/fuzz/seeds/*; do
  [ -f "$f" ] && cp "$f" "$corpus/seed-$(basename "$f")"
done
exec nice "$build/tests/fuzz/config_fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -dict="$src/tests/fuzz/config.dict" -print_final_stats=1 \
  -artifact_prefix="$build/fuzz-" "$@" "$corpus"
