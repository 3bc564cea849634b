#!/bin/sh
# Builds a libFuzzer target with clang (CMake preset `fuzz`, into build/fuzz) and runs it for
# a bounded time over its seed corpus.
#   tests/fuzz/run-fuzz.sh [SECONDS] [extra libFuzzer options...]
#   FUZZ_TARGET=therapy_document_fuzzer tests/fuzz/run-fuzz.sh 30
# FUZZ_TARGET: config_fuzzer (the default: every YAML loader, seeded with every example and
# the shipped drug library) or therapy_document_fuzzer (the ImportTherapy document, seeded
# with a real export by therapy_document_seed).
# Needs clang-14 and libclang-rt-14-dev (Debian 12).  Exit status: libFuzzer's (non-zero
# on a crash, a leak, a timeout or a sanitizer report).
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
target=${FUZZ_TARGET:-config_fuzzer}
build="$src/build/fuzz"
cd "$src"
if [ ! -f "$build/build.ninja" ]; then
  nice cmake --preset fuzz >/dev/null
fi
corpus="$build/fuzz-corpus-$target"
mkdir -p "$corpus"
case $target in
  config_fuzzer)
    nice cmake --build "$build" --target config_fuzzer -j2
    for f in "$src"/examples/*.yaml "$src"/config/drugs.yaml "$src"/tests/fuzz/seeds/*; do
      [ -f "$f" ] && cp "$f" "$corpus/seed-$(basename "$f")"
    done
    set -- -dict="$src/tests/fuzz/config.dict" "$@" ;;
  therapy_document_fuzzer)
    nice cmake --build "$build" --target therapy_document_fuzzer therapy_document_seed -j2
    "$build/tests/fuzz/therapy_document_seed" "$src" "$corpus" ;;
  *) echo "run-fuzz.sh: unknown FUZZ_TARGET $target" >&2; exit 2 ;;
esac
exec nice "$build/tests/fuzz/$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/fuzz-$target-" "$@" "$corpus"
