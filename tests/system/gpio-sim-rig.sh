#!/bin/bash
# The gpio-sim rig (issue 8, SPEC 8): boots Debian's PREEMPT_RT kernel (linux-image-rt-amd64)
# under qemu (TCG: KVM cannot run stock kernels on these hosts), with the kernel's gpio-sim
# driver built out of tree at test time, and runs the real thecald (backend gpiod) on the
# simulated lines, driven over a private D-Bus by the real thecalctl.  The guest's checks are
# in rig-guest-init.sh beside this file; their results come back on the serial console.
#
#   tests/system/gpio-sim-rig.sh [--thecald PATH] [--thecalctl PATH] [--keep]
#   tests/system/gpio-sim-rig.sh --cache-only
#
# --cache-only does steps 1-3 alone (the RT kernel and gpio-sim.ko into the cache) and prints
# one line "K V DIR": the kernel's ABI, its version and the cache directory holding
# kernel/boot/vmlinuz-K, kernel/lib/modules/K and mod/gpio-sim.ko.  systemd-guest.sh uses it,
# so both tests get the same kernel and module from the same cache step.
#
# Needs root (apt-get, depmod into a staging tree) and network access to Debian's
# repositories on the first run.  Downloads and builds are cached under $THECAL_RIG_CACHE
# (default: $XDG_CACHE_HOME/thecal-rig, or /var/cache/thecal-rig for root), keyed by the
# kernel's ABI and version, which are looked up at each run (they move with Debian updates).
# Nothing of the kernel is ever written into the source tree.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
THECALD=$SRC/build/default/daemon/thecald
THECALCTL=$SRC/build/default/thecalctl/thecalctl
REPLAY=$SRC/build/default/replay/thecal-replay
KEEP=0
CACHE_ONLY=0
while [ $# -gt 0 ]; do
  case $1 in
    --thecald) THECALD=$2; shift 2 ;;
    --thecalctl) THECALCTL=$2; shift 2 ;;
    --replay) REPLAY=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --cache-only) CACHE_ONLY=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpio-sim-rig: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ $CACHE_ONLY = 0 ] && ! { [ -x "$THECALD" ] && [ -x "$THECALCTL" ]; }; then
  echo "gpio-sim-rig: build thecald and thecalctl first ($THECALD, $THECALCTL)" >&2; exit 2
fi
[ "$(id -u)" = 0 ] || { echo "gpio-sim-rig: run as root (it installs packages with apt-get)" >&2; exit 2; }

if [ -n "${THECAL_RIG_CACHE:-}" ]; then CACHE=$THECAL_RIG_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then CACHE=$XDG_CACHE_HOME/thecal-rig
else CACHE=/var/cache/thecal-rig; fi
mkdir -p "$CACHE"
T0=$(date +%s)
# Progress goes to stderr: with --cache-only, stdout carries the answer alone.
log() { echo "gpio-sim-rig [$(( $(date +%s) - T0 ))s] $*" >&2; }

# ---- 1. host tools (installed only if missing) -------------------------------------------
export DEBIAN_FRONTEND=noninteractive
need=()
tools="kmod xz-utils make gcc libc6-dev"   # the module build
[ $CACHE_ONLY = 1 ] || tools="$tools qemu-system-x86 busybox-static dbus-daemon tzdata"
for p in $tools; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { log "apt-get update"; apt-get update -q >/dev/null; apt_updated=1; }; }
apt_install() { apt-get install -y -q "$@" >/dev/null 2>&1 || { apt_update; apt-get install -y -q "$@" >/dev/null; }; }
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt_install "${need[@]}"
fi

# ---- 2. the RT kernel: ABI and version of the current linux-image-rt-amd64 ---------------
resolve_kernel() {
  K=$(apt-cache depends linux-image-rt-amd64 2>/dev/null | awk '/Depends: linux-image-/{sub("linux-image-","",$2); print $2; exit}')
  [ -n "$K" ] && V=$(apt-cache show "linux-image-$K-unsigned" 2>/dev/null | awk '/^Version:/{print $2; exit}')
  [ -n "${K:-}" ] && [ -n "${V:-}" ]
}
resolve_kernel || { apt_update; resolve_kernel; } || { echo "gpio-sim-rig: cannot resolve linux-image-rt-amd64" >&2; exit 1; }
KC=$CACHE/$K-$V
mkdir -p "$KC/dl"
log "kernel $K version $V (cache $KC)"
download() {  # download PACKAGE=VERSION...: into $KC/dl (apt-get download)
  (cd "$KC/dl" && { apt-get download -q "$@" >/dev/null 2>&1 || { apt_update; apt-get download -q "$@" >/dev/null; }; })
}
if [ ! -f "$KC/kernel/boot/vmlinuz-$K" ]; then
  log "downloading the kernel image"
  rm -rf "$KC/kernel" "$KC/kernel.tmp" "$KC"/dl/linux-image-*.deb
  download "linux-image-$K-unsigned=$V"
  dpkg -x "$KC"/dl/linux-image-"$K"-unsigned_*.deb "$KC/kernel.tmp" && mv "$KC/kernel.tmp" "$KC/kernel"
fi

# ---- 3. gpio-sim.ko (Debian has CONFIG_GPIO_SIM and CONFIG_IRQ_SIM off) --------------------
# Built into mod.tmp and moved into place whole: a run that stops half-way leaves no module
# that looks built.  linux-source is fetched here, when the module is missing, whoever came
# first (an older systemd-guest.sh cached the kernel image without it).
if [ ! -f "$KC/mod/gpio-sim.ko" ]; then
  if ! dpkg-query -W -f='${Status}' "linux-headers-$K" 2>/dev/null | grep -q 'install ok installed'; then
    log "installing linux-headers-$K"
    apt_install "linux-headers-$K"
  fi
  if ! ls "$KC"/dl/linux-source-6.1_*.deb >/dev/null 2>&1; then
    log "downloading linux-source-6.1=$V"
    download "linux-source-6.1=$V"
  fi
  log "building gpio-sim.ko out of tree"
  M=$KC/mod.tmp
  rm -rf "$KC/mod" "$M" "$KC/src" && mkdir -p "$M" "$KC/src"
  dpkg -x "$KC"/dl/linux-source-6.1_*.deb "$KC/src"
  tar -xJf "$KC/src/usr/src/linux-source-6.1.tar.xz" -C "$M" --strip-components=3 \
    linux-source-6.1/drivers/gpio/gpio-sim.c linux-source-6.1/drivers/gpio/gpiolib.h
  tar -xJf "$KC/src/usr/src/linux-source-6.1.tar.xz" -C "$M" --strip-components=3 linux-source-6.1/kernel/irq/irq_sim.c
  rm -rf "$KC/src"  # 130 MB: only the three files are needed
  mv "$M/gpio-sim.c" "$M/gpio-sim-main.c"
  # irq_to_desc() is not exported to modules.
  sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$M/irq_sim.c"
  grep -q 'generic_handle_irq(irqnum);' "$M/irq_sim.c" || { echo "gpio-sim-rig: irq_sim.c patch did not apply" >&2; exit 1; }
  printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n' > "$M/Kbuild"
  nice make -s -C "/lib/modules/$K/build" M="$M" modules >"$M/build.log" 2>&1 ||
    { cat "$M/build.log" >&2; exit 1; }
  mv "$M" "$KC/mod"
fi
[ -f "$KC/mod/gpio-sim.ko" ] || { echo "gpio-sim-rig: no $KC/mod/gpio-sim.ko after the build step" >&2; exit 1; }
if [ $CACHE_ONLY = 1 ]; then
  echo "$K $V $KC"
  exit 0
fi

# ---- 4. the initramfs: busybox, modules, thecald, thecalctl, dbus-daemon, configs --------
W=$(mktemp -d /tmp/thecal-rig.XXXXXX)
cleanup() { if [ $KEEP = 1 ]; then echo "gpio-sim-rig: kept $W"; else rm -rf "$W"; fi; }
trap cleanup EXIT
R=$W/root
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,run,etc/thecal,usr/bin,usr/sbin,usr/share/thecal,var/lib/thecal,lib/modules/$K/extra}
cp /bin/busybox "$R/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
cp "$KC/kernel/lib/modules/$K/kernel/fs/configfs/configfs.ko" "$KC/mod/gpio-sim.ko" "$R/lib/modules/$K/extra/"
cp "$KC"/kernel/lib/modules/"$K"/modules.builtin* "$R/lib/modules/$K/"
touch "$R/lib/modules/$K/modules.order"
depmod -b "$R" "$K"
copy_bin() {  # binary + every library ldd names
  mkdir -p "$R$(dirname "$2")"
  cp -L "$1" "$R$2"
  for l in $(ldd "$1" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
}
copy_bin "$THECALD" /usr/sbin/thecald
copy_bin "$THECALCTL" /usr/bin/thecalctl
# thecal-replay: the guest replays its own flight recording at the end (S15, issue 15).
if [ -x "$REPLAY" ]; then copy_bin "$REPLAY" /usr/bin/thecal-replay; fi
copy_bin /usr/bin/dbus-daemon /usr/bin/dbus-daemon
cp "$SRC/config/drugs.yaml" "$R/usr/share/thecal/drugs.yaml"
# The tz database (prescriptions name their time zone), without the posix/ and right/ copies.
mkdir -p "$R/usr/share/zoneinfo"
(cd /usr/share/zoneinfo && tar --exclude=./posix --exclude=./right -cf - .) | tar -xf - -C "$R/usr/share/zoneinfo"
# The example continuous prescription plus a patient bolus, for the bolus button's checks
# (0.1 mg, 3 h lockout: planned 1.5 + 4 x 0.1 = 1.9 mg/day under the 3 mg limit).
{ cat "$SRC/examples/prescription-continuous.yaml"
  printf 'patient_bolus:\n  dose: 0.1 mg\n  duration: 10 min\n  lockout: 3 h\n  max_per_day: 4\n'
} > "$R/etc/thecal/prescription.yaml"
cp "$HERE/rig-thecald.yaml" "$R/etc/thecal/thecald.yaml"
mkdir -p "$R/usr/share/dbus-1/system.d"
cp "$SRC/packaging/org.thecal.Pump1.conf" "$R/usr/share/dbus-1/system.d/"
sed -e 's|@SOCKET@|/run/thecal-bus|' -e 's|@POLICY@|/usr/share/dbus-1/system.d/org.thecal.Pump1.conf|' \
  "$SRC/scripts/test-bus.conf.in" > "$R/etc/thecal/bus.conf"
printf 'root:x:0:0:root:/root:/bin/sh\nmessagebus:x:100:101::/run:/bin/false\nthecal:x:990:990::/var/lib/thecal:/bin/false\n' > "$R/etc/passwd"
printf 'root:x:0:\nmessagebus:x:101:\nthecal:x:990:\nthecal-clinician:x:991:root\nthecal-patient:x:992:\n' > "$R/etc/group"
echo 0123456789abcdef0123456789abcdef > "$R/etc/machine-id"
chmod 644 "$R"/etc/thecal/*
cp "$HERE/rig-guest-init.sh" "$R/init"
chmod +x "$R/init"
# THECAL_RIG_HOOK: a script sourced here, with $R, $SRC, $K and copy_bin, that may add files
# and replace /init (bench-rt-guest.sh uses it to run the benchmarks in this guest).
if [ -n "${THECAL_RIG_HOOK:-}" ]; then . "$THECAL_RIG_HOOK"; fi
(cd "$R" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) | gzip -1 > "$W/initramfs.cpio.gz"
log "initramfs $(du -h "$W/initramfs.cpio.gz" | cut -f1)"

# ---- 5. boot and collect -------------------------------------------------------------------
log "booting the PREEMPT_RT guest (qemu TCG)"
set +e
timeout "${THECAL_RIG_TIMEOUT:-600}" nice qemu-system-x86_64 -accel tcg -cpu max -m 768 -smp 2 -nic none -no-reboot \
  -kernel "$KC/kernel/boot/vmlinuz-$K" -initrd "$W/initramfs.cpio.gz" -nographic -monitor none -serial stdio \
  -append "console=ttyS0 loglevel=4 panic=-1 ${THECAL_RIG_APPEND:-}" </dev/null > "$W/console.log" 2>&1
qrc=$?
set -e
grep -a '^RIG' "$W/console.log" || true
if [ $qrc -ne 0 ] || ! grep -aq '^RIG done' "$W/console.log" || grep -aq '^RIG FAIL' "$W/console.log"; then
  echo "gpio-sim-rig: FAILED (qemu exit $qrc); console log follows" >&2
  tail -n 80 "$W/console.log" >&2
  KEEP=1
  exit 1
fi
log "all checks passed"
