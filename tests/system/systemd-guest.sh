#!/bin/bash
# The packaged service under a real systemd (issue 9, SPEC 8): a Debian 12 guest made with
# debootstrap (minbase + systemd, systemd-sysv, dbus, udev, kmod and exactly the Depends the
# .deb declares, nothing else) boots Debian's PREEMPT_RT kernel under qemu (TCG), installs the
# .deb offline with apt, and checks the unit under systemd as PID 1 on the real system bus:
# READY, roles through the bus policy, reload, watchdog restart with therapy resumed from the
# journal, stop with the motor disabled, the structured journal fields.  The guest's checks are
# in systemd-guest-checks.sh beside this file; results come back on a second serial port.
#
#   tests/system/systemd-guest.sh [--build DIR | --deb FILE] [--keep]
#
# Needs root (apt-get, debootstrap) and, on the first run, access to Debian's repositories
# (the guest itself has no network).  Cached between runs:
#   - the RT kernel and gpio-sim.ko, from the gpio-sim rig's cache step (gpio-sim-rig.sh
#     --cache-only: $THECAL_RIG_CACHE, default $XDG_CACHE_HOME/thecal-rig or
#     /var/cache/thecal-rig, keyed by the kernel's ABI/version; built there if missing);
#   - the guest's root image: $THECAL_GUEST_CACHE (default $XDG_CACHE_HOME/thecal-guest, or
#     /var/cache/thecal-guest), keyed by the package list (base + the .deb's Depends) and the
#     image recipe below.  The cached image is booted with snapshot=on: never modified.
# THECAL_GUEST_TIMEOUT changes the qemu timeout (420 s).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$SRC/build/default
DEB=
KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --deb) DEB=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "systemd-guest: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "systemd-guest: run as root (apt-get, debootstrap)" >&2; exit 2; }

cache_dir() {  # cache_dir ENVVAR NAME
  if [ -n "${!1:-}" ]; then echo "${!1}"
  elif [ -n "${XDG_CACHE_HOME:-}" ]; then echo "$XDG_CACHE_HOME/$2"
  else echo "/var/cache/$2"; fi
}
GCACHE=$(cache_dir THECAL_GUEST_CACHE thecal-guest)
mkdir -p "$GCACHE"
T0=$(date +%s)
log() { echo "systemd-guest [$(( $(date +%s) - T0 ))s] $*"; }

W=$(mktemp -d /tmp/thecal-guest.XXXXXX)
cleanup() { if [ $KEEP = 1 ]; then echo "systemd-guest: kept $W"; else rm -rf "$W"; fi; }
trap cleanup EXIT

# ---- 1. host tools (installed only if missing) -------------------------------------------
export DEBIAN_FRONTEND=noninteractive
need=()
for p in qemu-system-x86 debootstrap busybox-static kmod e2fsprogs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { log "apt-get update"; apt-get update -q >/dev/null; apt_updated=1; }; }
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt_update; apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi

# ---- 2. the .deb -------------------------------------------------------------------------
if [ -z "$DEB" ]; then
  [ -f "$BUILD/CPackConfig.cmake" ] || { echo "systemd-guest: no $BUILD/CPackConfig.cmake: build first" >&2; exit 2; }
  cpack --config "$BUILD/CPackConfig.cmake" -G DEB -B "$W/cpack" > "$W/cpack.log" 2>&1 || { cat "$W/cpack.log" >&2; exit 1; }
  DEB=$(ls "$W"/cpack/thecal_*_amd64.deb)
fi
[ -f "$DEB" ] || { echo "systemd-guest: no .deb ($DEB)" >&2; exit 2; }
[ "$(dpkg-deb -f "$DEB" Architecture)" = amd64 ] || { echo "systemd-guest: $DEB is not amd64" >&2; exit 2; }
# The declared Depends, names only (first alternative): the guest gets these and nothing else
# beyond the base, so an undeclared dependency shows up as a daemon that cannot start.
DEPENDS=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep . | sort -u | paste -sd, -)
log "$(basename "$DEB"): Depends names $DEPENDS"

# ---- 3. the RT kernel and gpio-sim.ko: the gpio-sim rig's own cache step -------------------
# gpio-sim-rig.sh --cache-only downloads the kernel and builds gpio-sim.ko if the cache lacks
# them (first run on a clean machine) and names the cache directory.  The guest needs both:
# without the module it could not check backend gpiod, and a missing module is a failure.
kc=$("$HERE/gpio-sim-rig.sh" --cache-only) || { echo "systemd-guest: the kernel and gpio-sim.ko cache step failed" >&2; exit 1; }
read -r K V KC <<<"$kc"
KT=$KC/kernel
for f in "$KT/boot/vmlinuz-$K" "$KC/mod/gpio-sim.ko" "$KT/lib/modules/$K/kernel/fs/configfs/configfs.ko"; do
  [ -f "$f" ] || { echo "systemd-guest: $f missing after the cache step" >&2; exit 1; }
done
log "kernel $K version $V, gpio-sim.ko from $KC/mod"

# ---- 4. the boot initramfs: virtio disk + ext4 are modules in Debian's kernel ------------
INITRD=$GCACHE/initrd-$K-$V.cpio.gz
if [ ! -f "$INITRD" ]; then
  log "building the boot initramfs"
  I=$W/initrd
  mkdir -p "$I"/{bin,dev,proc,sys,newroot,m}
  cp /bin/busybox "$I/bin/"
  for a in sh mount umount switch_root insmod sleep mkdir cat echo; do ln -s busybox "$I/bin/$a"; done
  # Module order from the kernel's own dependency data (modules.dep is made by the
  # package's postinst, so depmod it here, in the cached tree).
  [ -f "$KT/lib/modules/$K/modules.dep" ] || depmod -b "$KT" "$K"
  for m in virtio_pci virtio_blk crc32c_generic ext4; do modprobe -d "$KT" -S "$K" --show-depends "$m"; done | awk '$1 == "insmod" && !seen[$2]++ {print $2}' > "$W/mods"
  : > "$I/order"
  while read -r m; do cp "$m" "$I/m/"; basename "$m" >> "$I/order"; done < "$W/mods"
  [ -s "$I/order" ] || { echo "systemd-guest: no boot modules found" >&2; exit 1; }
  cat > "$I/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /order); do insmod /m/$m; done
n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; sleep 5; echo o > /proc/sysrq-trigger; }
umount /proc /sys; mount -o move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
EOF
  chmod +x "$I/init"
  (cd "$I" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) | gzip -1 > "$INITRD.tmp" && mv "$INITRD.tmp" "$INITRD"
fi

# ---- 5. the guest's root image (cached) ---------------------------------------------------
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
BASE_PKGS=systemd,systemd-sysv,dbus,udev,kmod
RECIPE_VERSION=1   # bump when the image recipe below changes
KEY=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$BASE_PKGS" "$DEPENDS" | sha256sum | cut -c1-16)
IMG=$GCACHE/root-$KEY.img
if [ ! -f "$IMG" ]; then
  log "debootstrap $SUITE minbase + $BASE_PKGS + the Depends (no cached image $KEY)"
  R=$W/rootfs
  debootstrap --variant=minbase --include="$BASE_PKGS,$DEPENDS" "$SUITE" "$R" "$MIRROR" > "$W/debootstrap.log" 2>&1 ||
    { tail -n 30 "$W/debootstrap.log" >&2; echo "systemd-guest: debootstrap failed" >&2; exit 1; }
  echo thecal-guest > "$R/etc/hostname"
  echo 0123456789abcdef0123456789abcdef > "$R/etc/machine-id"
  : > "$R/etc/fstab"
  rm -f "$R"/var/cache/apt/archives/*.deb
  # The console: no getty on the serial ports (ttyS0 is the console log, ttyS1 the results).
  for u in serial-getty@ttyS0 serial-getty@ttyS1 getty@tty1 apt-daily.timer apt-daily-upgrade.timer \
           e2scrub_all.timer e2scrub_reap fstrim.timer systemd-timesyncd; do
    ln -sf /dev/null "$R/etc/systemd/system/$u$(case $u in *.*) ;; *) echo .service ;; esac)"
  done
  # The test runner: mounts the payload disk and runs its checks, output on ttyS1.
  cat > "$R/etc/systemd/system/thecal-guest-checks.service" <<'EOF'
[Unit]
Description=thecal guest checks (tests/system/systemd-guest.sh)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /mnt/payload && mount -o ro /dev/vdb /mnt/payload && exec /bin/bash /mnt/payload/checks.sh'
StandardOutput=file:/dev/ttyS1
StandardError=inherit
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
  mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
  ln -sf ../thecal-guest-checks.service "$R/etc/systemd/system/multi-user.target.wants/"
  rm -f "$GCACHE"/root-*.img  # one image at a time
  mke2fs -q -t ext4 -L thecal-root -d "$R" "$IMG.tmp" 2G
  mv "$IMG.tmp" "$IMG"
  rm -rf "$R"
  log "guest image $(du -h "$IMG" | cut -f1) cached as $IMG"
fi

# ---- 6. the payload disk: the .deb and the checks ----------------------------------------
P=$W/payload
mkdir -p "$P"
cp "$DEB" "$P/"
cp "$HERE/systemd-guest-checks.sh" "$P/checks.sh"
cp "$SRC/examples/prescription-continuous.yaml" "$SRC/examples/prescription-flex.yaml" "$P/"
# gpio-sim.ko as the gpio-sim rig builds it (same cache step, same kernel): backend gpiod is
# checked on simulated lines too (the guest fails if the module is not on the payload).
cp "$KC/mod/gpio-sim.ko" "$KT/lib/modules/$K/kernel/fs/configfs/configfs.ko" "$HERE/rig-thecald.yaml" "$P/"
mke2fs -q -t ext4 -L payload -d "$P" "$W/payload.img" 64M

# ---- 7. boot and collect -----------------------------------------------------------------
log "booting the Debian 12 guest (PREEMPT_RT kernel, qemu TCG)"
set +e
timeout "${THECAL_GUEST_TIMEOUT:-420}" nice qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 2 -nic none -no-reboot \
  -kernel "$KT/boot/vmlinuz-$K" -initrd "$INITRD" \
  -drive file="$IMG",if=virtio,format=raw,snapshot=on -drive file="$W/payload.img",if=virtio,format=raw,readonly=on \
  -display none -monitor none -serial file:"$W/console.log" -serial file:"$W/results.log" \
  -append "console=ttyS0 loglevel=4 panic=-1 systemd.show_status=0 ${THECAL_GUEST_APPEND:-}" </dev/null > "$W/qemu.log" 2>&1
qrc=$?
set -e
tr -d '\r' < "$W/results.log" > "$W/results.txt" || true
grep -a '^GUEST' "$W/results.txt" || true
if [ $qrc -ne 0 ] || ! grep -aq '^GUEST done fails=0' "$W/results.txt"; then
  echo "systemd-guest: FAILED (qemu exit $qrc); results and console log follow" >&2
  cat "$W/results.txt" "$W/qemu.log" >&2
  tr -d '\r' < "$W/console.log" | tail -n 60 >&2
  KEEP=1
  exit 1
fi
log "all checks passed"
