# Sourced by gpio-sim-rig.sh (THECAL_RIG_HOOK) when bench-rt-guest.sh runs it: adds the
# benchmark, its references (cyclictest, stress-ng, the baseline sd-bus server) and the
# files it reads to the guest's initramfs, and makes bench-rt-guest-init.sh the guest's /init.
# Uses $R (the root being packed), $SRC, copy_bin; $THECAL_BENCH_BIN is the build's bench/.
copy_bin "$THECAL_BENCH_BIN/thecal-bench" /usr/bin/thecal-bench
copy_bin "$THECAL_BENCH_BIN/bench-dbus-baseline" /usr/bin/bench-dbus-baseline
copy_bin "$(command -v cyclictest)" /usr/bin/cyclictest
copy_bin "$(command -v stress-ng)" /usr/bin/stress-ng
B=$R/usr/share/thecal-bench
mkdir -p "$B/examples" "$B/config" "$B/packaging" "$B/scripts" "$B/bench"
cp "$SRC"/examples/*.yaml "$B/examples/"
cp "$SRC/config/drugs.yaml" "$B/config/"
cp "$SRC/packaging/org.thecal.Pump1.conf" "$B/packaging/"
cp "$SRC/scripts/test-bus.conf.in" "$B/scripts/"
cp "$SRC/bench/bench-baseline.conf" "$B/bench/"
cp "$THECAL_BENCH_GUEST_INIT" "$R/init"
chmod +x "$R/init"
printf '%s\n' "$THECAL_BENCH_GUEST_ARGS" > "$R/etc/thecal/bench-args"
