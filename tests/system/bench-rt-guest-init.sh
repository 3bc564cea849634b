#!/bin/sh
# /init of the benchmark guest (bench-rt-guest.sh): Debian's PREEMPT_RT kernel under qemu
# TCG runs thecal-bench end to end, exactly as on the host (private bus, real thecald on the
# sim backend, cyclictest, stress-ng, the baseline sd-bus server).  The results come back on
# the serial console between BENCHFILE/BENCHEND markers.  Software emulation: the latency
# figures say nothing about any board.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
ulimit -l unlimited 2>/dev/null
echo "RIG NOTE: bench guest $(uname -r) $(uname -v | grep -o 'PREEMPT_RT' || echo 'no PREEMPT_RT') $(nproc) cpus"
mkdir -p /tmp/bench
eval "set -- $(cat /etc/thecal/bench-args)"
thecal-bench --share /usr/share/thecal-bench --thecald /usr/sbin/thecald --baseline /usr/bin/bench-dbus-baseline \
  --out /tmp/bench/latest.json --label guest "$@" \
  --note "qemu TCG software emulation, Debian PREEMPT_RT kernel $(uname -r): timing here says nothing about a board" \
  > /tmp/bench/run.log 2>&1
rc=$?
sed 's/^/BENCHLOG /' /tmp/bench/run.log
for f in /tmp/bench/*.json /tmp/bench/*.dat; do
  [ -f "$f" ] || continue
  echo "BENCHFILE $(basename "$f")"
  cat "$f"
  echo "BENCHEND"
done
if [ $rc = 0 ]; then echo "RIG OK: thecal-bench ran end to end in the PREEMPT_RT guest"
else echo "RIG FAIL: thecal-bench exited $rc in the guest"; fi
echo "RIG done uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
