#!/usr/bin/env bash
# Packaging checks: the unit's systemd-analyze security exposure (target <= 2.0, printed),
# the .deb built by CPack (Debian layout, conffiles, maintainer scripts), and lintian with
# no errors or warnings.
set -euo pipefail
SRC=$1 BUILD=$2
OUT=$(mktemp -d /tmp/thecal-pkg.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for unit in thecald.service thecal-dashboard.service; do
  score_line=$(systemd-analyze security --offline=true --no-pager "$SRC/packaging/$unit" 2>&1 | grep 'Overall exposure level')
  echo "systemd-analyze security: $score_line"
  score=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$score_line")
  awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "$unit: exposure $score above 2.0"
done

cpack --config "$BUILD/CPackConfig.cmake" -G DEB -B "$OUT" >/dev/null
deb=$(ls "$OUT"/thecal_*.deb)
echo "built $(basename "$deb")"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/sbin/thecald ./usr/bin/thecalctl ./lib/systemd/system/thecald.service \
         ./usr/bin/thecal-dashboard ./lib/systemd/system/thecal-dashboard.service \
         ./usr/share/dbus-1/system.d/org.thecal.Pump1.conf ./usr/lib/sysusers.d/thecal.conf \
         ./usr/lib/tmpfiles.d/thecal.conf ./lib/udev/rules.d/60-thecal-gpio.rules \
         ./etc/thecal/thecald.yaml ./usr/share/thecal/drugs.yaml ./usr/share/man/man1/thecalctl.1.gz \
         ./usr/share/man/man8/thecald.8.gz ./usr/share/man/man1/thecal-dashboard.1.gz ./usr/share/doc/thecal/copyright; do
  grep -qx "$f" <<<"$contents" || fail "$f missing from the package"
done
dpkg-deb -e "$deb" "$OUT/control"
grep -qx /etc/thecal/thecald.yaml "$OUT/control/conffiles" || fail "thecald.yaml is not a conffile"
for s in postinst prerm postrm; do [ -x "$OUT/control/$s" ] || fail "$s missing"; done
# The dashboard ships disabled: nothing in the maintainer scripts enables or starts it.
! grep -E '(enable|start) thecal-dashboard' "$OUT/control/postinst" || fail "postinst enables the dashboard"
grep -q 'libsystemd0' "$OUT/control/control" || fail "shared-library dependencies not declared"
grep -q '^Depends:.*procps' "$OUT/control/control" || fail "procps (/bin/kill of ExecReload) not in Depends"
grep -q '^Depends:.*libgcrypt20' "$OUT/control/control" || fail "libgcrypt20 (SHA-256 of the prescription id) not in Depends"
# OpenSSL's libcrypto would add 4.6 MB that thecald's mlockall keeps resident (README); the
# dashboard may use it (Debian's cpp-httplib links libssl), the daemon must not.
dpkg-deb -x "$deb" "$OUT/root"
needed=$(objdump -p "$OUT/root/usr/sbin/thecald" | awk '$1 == "NEEDED" {print $2}')
grep -q '^libgcrypt' <<<"$needed" || fail "thecald does not link libgcrypt: $(tr '\n' ' ' <<<"$needed")"
! grep -qE '^lib(crypto|ssl)' <<<"$needed" || fail "thecald links OpenSSL: $(tr '\n' ' ' <<<"$needed")"
lint=$(lintian --tag-display-limit 0 "$deb" 2>&1 | grep -E '^[EW]: ' || true)
if [ -n "$lint" ]; then echo "$lint"; fail "lintian reports errors or warnings"; fi
echo "lintian: clean"
echo "packaging: OK"
