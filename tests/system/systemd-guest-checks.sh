#!/bin/bash
# Runs inside the Debian 12 guest of systemd-guest.sh (as root, from a oneshot unit started
# after multi-user.target; stdout is the second serial port).  Checks the packaged thecald
# under systemd as PID 1 on the real system bus.  Prints "GUEST OK|FAIL|NOTE: ..." lines and
# "GUEST done fails=N", then powers the guest off.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
P=/mnt/payload
FAILS=0
T0=$(cut -d' ' -f1 /proc/uptime)
ok() { echo "GUEST OK: $*"; }
fail() { echo "GUEST FAIL: $*"; FAILS=$((FAILS + 1)); }
note() { echo "GUEST NOTE: $*"; }
check() { d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
finish() {
  note "journal of thecald (last 40 lines):"
  journalctl -u thecald --no-pager -o short-monotonic | tail -n 40 | sed 's/^/  | /'
  echo "GUEST done fails=$FAILS uptime=$(cut -d' ' -f1 /proc/uptime)"
  sync
  systemctl poweroff --no-block
  exit 0
}
uptime_s() { cut -d. -f1 /proc/uptime; }
wait_for() {  # wait_for SECONDS COMMAND...: polls COMMAND until it succeeds or SECONDS pass
  local end=$(( $(uptime_s) + $1 )); shift
  while :; do "$@" && return 0; [ "$(uptime_s)" -lt $end ] || return 1; sleep 0.2; done
}
prop() { systemctl show -P "$1" thecald; }
pump() {  # pump PROPERTY: a property of org.thecal.Pump1 read with busctl (the real system bus)
  busctl --system get-property org.thecal.Pump1 /org/thecal/Pump1 org.thecal.Pump1 "$1" 2>/dev/null |
    sed -e 's/^[a-z]* //' -e 's/^"\(.*\)"$/\1/'
}
as() { local u=$1; shift; runuser -u "$u" -- "$@"; }
state_is() { [ "$(pump State)" = "$1" ]; }
note "booted $(uname -r) ($(uname -v | grep -o PREEMPT_RT || echo 'no PREEMPT_RT')), systemd $(systemctl --version | awk 'NR==1{print $2}') as PID 1: $(cat /proc/1/comm), multi-user after ${T0}s"

# ---- 1. install the .deb with apt, offline: every declared Depends must already be there --
cp "$P"/thecal_*.deb /tmp/
deb=$(ls /tmp/thecal_*.deb)
if out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb" 2>&1); then
  ok "apt-get install $deb, offline, (Depends: $(dpkg-deb -f "$deb" Depends))"
else
  echo "$out" | tail -n 15 | sed 's/^/  | /'
  fail "apt-get install of the .deb"; finish
fi
check "dpkg: thecal is installed" sh -c "dpkg-query -W -f='\${Status}' thecal | grep -q 'install ok installed'"
check "sysusers made user thecal and groups thecal-clinician, thecal-patient" \
  sh -c 'getent passwd thecal >/dev/null && getent group thecal-clinician >/dev/null && getent group thecal-patient >/dev/null'
check "the unit is enabled by postinst" [ "$(systemctl is-enabled thecald)" = enabled ]

# ---- 2. started by postinst, READY (Type=notify), status text --------------------------
wait_for 30 systemctl is-active --quiet thecald
check "thecald is active (Type=notify: READY=1 received)" [ "$(systemctl is-active thecald)" = active ]
wait_for 10 sh -c '[ -n "$(systemctl show -P StatusText thecald)" ]'
st=$(prop StatusText)
check "StatusText reported through sd_notify: '$st'" [ -n "$st" ]
pid=$(prop MainPID)
check "runs as user thecal" [ "$(awk '/^Uid:/{print $2}' /proc/$pid/status)" = "$(id -u thecal)" ]
caps=$(grep CapEff /proc/"$(prop MainPID)"/status | awk '{print $2}')
check "effective capabilities are CAP_SYS_NICE and CAP_IPC_LOCK only ($caps)" [ "$caps" = 0000000000804000 ]
fifo=$(for t in /proc/$pid/task/*; do chrt -p "${t##*/}"; done 2>/dev/null | grep -c 'SCHED_FIFO')
check "the dosing loop runs SCHED_FIFO ($fifo thread(s))" [ "$fifo" -ge 1 ]
check "the udev rule gives group thecal /dev/cpu_dma_latency ($(stat -c '%G %a' /dev/cpu_dma_latency))" \
  [ "$(stat -c '%G %a' /dev/cpu_dma_latency)" = "thecal 660" ]
check "thecald holds its PM QoS request open on /dev/cpu_dma_latency (loop.cpu_dma_latency)" \
  sh -c "ls -l /proc/$pid/fd | grep -q /dev/cpu_dma_latency"

# ---- 3. roles through the real bus policy ----------------------------------------------
useradd -m -G thecal-clinician alice
useradd -m bob
out=$(as alice thecalctl --system status 2>&1); rc=$?
echo "$out" | head -n 4 | sed 's/^/  | /'
check "thecalctl --system status works for alice (thecal-clinician)" [ $rc -eq 0 ]
as bob thecalctl --system status > /dev/null 2>&1; rc=$?
check "any local user may read the status (bob, no group: exit $rc)" [ $rc -eq 0 ]
cp "$P/prescription-continuous.yaml" /tmp/rx.yaml; chmod 644 /tmp/rx.yaml
out=$(as bob thecalctl --system load /tmp/rx.yaml 2>&1); rc=$?
check "bob (no group) is refused programming: load exits 4 ($rc: $out)" [ $rc -eq 4 ]
out=$(as bob thecalctl --system start 2>&1); rc=$?
check "bob (no group) is refused programming: start exits 4 ($rc)" [ $rc -eq 4 ]

# ---- 4. systemctl reload re-reads the stored prescription -------------------------------
id0=$(pump PrescriptionId)
install -m 0640 -o root -g thecal "$P/prescription-continuous.yaml" /var/lib/thecal/prescription.yaml
systemctl reload thecald; rc=$?
wait_for 10 sh -c "[ \"\$(busctl --system get-property org.thecal.Pump1 /org/thecal/Pump1 org.thecal.Pump1 PrescriptionId)\" != 's \"$id0\"' ]"
id1=$(pump PrescriptionId)
check "systemctl reload (rc $rc) loads /var/lib/thecal/prescription.yaml: PrescriptionId '${id0}' -> '${id1:0:16}...'" \
  sh -c "[ -n '$id1' ] && [ '$id1' != '$id0' ]"
install -m 0640 -o root -g thecal "$P/prescription-flex.yaml" /var/lib/thecal/prescription.yaml
systemctl reload thecald; rc=$?
wait_for 10 sh -c "[ \"\$(busctl --system get-property org.thecal.Pump1 /org/thecal/Pump1 org.thecal.Pump1 PrescriptionId)\" != 's \"$id1\"' ]"
id2=$(pump PrescriptionId)
check "a second reload (rc $rc) with a new prescription changes PrescriptionId again ('${id2:0:16}...')" \
  sh -c "[ -n '$id2' ] && [ '$id2' != '$id1' ]"
check "still active after the reloads" [ "$(systemctl is-active thecald)" = active ]

# ---- 5. therapy, as the clinician ------------------------------------------------------
as alice thecalctl --system refill --withdrawn "0 mL" "20 mL" > /dev/null || fail "refill"
as alice thecalctl --system time-scale 3600 || fail "time-scale"
as alice thecalctl --system prime "0.22 mL" > /dev/null || fail "prime"
wait_for 60 sh -c '[ "$(busctl --system get-property org.thecal.Pump1 /org/thecal/Pump1 org.thecal.Pump1 CatheterPrimed)" = "b true" ]' ||
  fail "catheter primed"
wait_for 20 state_is idle
as alice thecalctl --system start > /dev/null; rc=$?
wait_for 10 state_is infusing
check "alice primes and starts: state infusing (start rc $rc)" state_is infusing
steps() { busctl --system get-property org.thecal.Pump1 /org/thecal/Pump1 org.thecal.Diagnostics1 StepsIssued | cut -d' ' -f2; }
primed_steps=$(steps)
check "basal delivery steps the motor after the priming's $primed_steps steps" \
  wait_for 60 sh -c "[ \"\$(busctl --system get-property org.thecal.Pump1 /org/thecal/Pump1 org.thecal.Diagnostics1 StepsIssued | cut -d' ' -f2)\" -gt $primed_steps ]"

# ---- 6. SIGSTOP: the systemd watchdog restarts it, therapy resumes from the journal ------
pid0=$(prop MainPID); n0=$(prop NRestarts)
kill -STOP "$pid0"
s0=$(cut -d' ' -f1 /proc/uptime)
wait_for 60 sh -c "[ \"\$(systemctl show -P NRestarts thecald)\" -gt $n0 ] && [ \"\$(systemctl show -P MainPID thecald)\" != $pid0 ] && systemctl is-active --quiet thecald"
s1=$(cut -d' ' -f1 /proc/uptime)
pid1=$(prop MainPID); n1=$(prop NRestarts)
check "SIGSTOP of thecald: restarted by systemd (NRestarts $n0 -> $n1, MainPID $pid0 -> $pid1, $(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.1f", b-a}') s)" \
  sh -c "[ $n1 -gt $n0 ] && [ $pid1 != $pid0 ] && [ $pid1 != 0 ]"
check "the journal shows the watchdog timeout" sh -c "journalctl -u thecald --no-pager | grep -q 'Watchdog timeout'"
wait_for 20 state_is infusing
check "therapy resumes from the journal: state $(pump State) without a new Start" state_is infusing
check "the restart is logged (event daemon_started after recovery)" \
  sh -c "[ \$(journalctl -u thecald -o cat THECAL_EVENT=daemon_started | wc -l) -ge 2 ]"

# ---- 6b. upgrade path: the package installed again (postinst configure with the old version:
# try-restart); the daemon restarts with a clean stop and therapy goes on from the journal ----
pid1=$(prop MainPID)
out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall "$deb" 2>&1); rc=$?
[ $rc -eq 0 ] || echo "$out" | tail -n 10 | sed 's/^/  | /'
wait_for 30 sh -c "[ \"\$(systemctl show -P MainPID thecald)\" != $pid1 ] && systemctl is-active --quiet thecald"
pid2=$(prop MainPID)
check "apt-get install --reinstall (rc $rc): postinst restarts thecald (MainPID $pid1 -> $pid2)" \
  sh -c "[ $rc -eq 0 ] && [ $pid2 != $pid1 ] && [ $pid2 != 0 ]"
wait_for 20 state_is infusing
check "after the package upgrade therapy goes on: state $(pump State)" state_is infusing

# ---- 7. systemctl stop leaves the motor disabled ---------------------------------------
inv=$(prop InvocationID)
systemctl stop thecald; rc=$?
check "systemctl stop (rc $rc): inactive, exit status $(prop ExecMainStatus), result $(prop Result)" \
  sh -c "[ \"\$(systemctl is-active thecald)\" = inactive ] && [ \"\$(systemctl show -P ExecMainStatus thecald)\" = 0 ] && [ \"\$(systemctl show -P Result thecald)\" = success ]"
check "the stopped daemon logged 'motor disabled'" \
  sh -c "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=$inv | grep -q 'motor disabled'"

# ---- 8. structured journal fields --------------------------------------------------------
js=$(journalctl -u thecald -o json --no-pager)
for f in MESSAGE_ID THECAL_EVENT THECAL_WHO; do
  check "journalctl -u thecald -o json carries $f" sh -c "echo '$(echo "$js" | grep -c "\"$f\"")' | grep -qv '^0$'"
done
ex=$(echo "$js" | grep '"THECAL_EVENT":"therapy_started\|"THECAL_EVENT":"prescription_loaded' | head -n 1 |
     grep -o '"\(MESSAGE_ID\|THECAL_EVENT\|THECAL_WHO\)":"[^"]*"' | paste -sd' ' -)
note "example record: ${ex:-none}"
who=$(echo "$js" | grep -o '"THECAL_WHO":"[^"]*"' | sort -u | paste -sd' ' -)
note "THECAL_WHO values: $who"
check "a programming act by alice is recorded with her uid ($(id -u alice))" \
  sh -c "echo '$who' | grep -q 'uid=$(id -u alice)\"'"

# ---- 9. backend gpiod on gpio-sim lines (the rig's gpio-sim.ko, always on the payload) ----
# The hardened unit as user thecal on a GPIO chip: the udev rule, DeviceAllow, the lines, and
# the enable line after systemctl stop.  No module on the payload is a failure, not a skip.
if [ -f "$P/gpio-sim.ko" ]; then
  insmod "$P/configfs.ko" 2>/dev/null; insmod "$P/gpio-sim.ko" || fail "insmod gpio-sim.ko"
  mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
  mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
  C=/sys/kernel/config/gpio-sim/bench
  mkdir $C $C/bank0 && echo 16 > $C/bank0/num_lines && echo thecal-bench > $C/bank0/label
  i=0
  for n in PUMP_nEN PUMP_STEP PUMP_DIR HEARTBEAT BUZZER DRV_nFAULT ENCODER P_HIGH P_LOW BOLUS_nBTN BATT_nLOW; do
    mkdir $C/bank0/line$i; echo $n > $C/bank0/line$i/name; i=$((i + 1))
  done
  echo 1 > $C/live
  S=/sys/devices/platform/$(cat $C/dev_name)/$(cat $C/bank0/chip_name)
  echo pull-up > $S/sim_gpio0/pull; echo pull-up > $S/sim_gpio10/pull   # the board's pull-ups on nENBL, nLOW
  udevadm settle
  dev=/dev/$(cat $C/bank0/chip_name)
  check "the udev rule gives group thecal the GPIO chip: $dev $(stat -c '%G %a' $dev)" [ "$(stat -c '%G %a' $dev)" = "thecal 660" ]
  install -m 0644 "$P/rig-thecald.yaml" /etc/thecal/thecald.yaml
  systemctl start thecald; rc=$?
  check "thecald starts with backend gpiod under the hardened unit (rc $rc, $(prop StatusText))" [ "$(systemctl is-active thecald)" = active ]
  held=$(grep -c '|thecald' /sys/kernel/debug/gpio)
  check "all 11 lines held by consumer thecald ($held)" [ "$held" = 11 ]
  note "state $(pump State), enable line (nENBL) while running: $(cat $S/sim_gpio0/value)"
  inv=$(prop InvocationID)
  systemctl stop thecald; rc=$?
  check "systemctl stop (rc $rc, exit status $(prop ExecMainStatus)): enable line inactive (nENBL=$(cat $S/sim_gpio0/value)), lines released ($(grep -c '|thecald' /sys/kernel/debug/gpio) held)" \
    sh -c "[ \$(cat $S/sim_gpio0/value) = 1 ] && [ \$(grep -c '|thecald' /sys/kernel/debug/gpio) = 0 ] && [ \"\$(systemctl show -P ExecMainStatus thecald)\" = 0 ]"
  check "the gpiod daemon logged 'motor disabled' on stop" \
    sh -c "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=$inv | grep -q 'motor disabled'"
else
  fail "no gpio-sim.ko on the payload (systemd-guest.sh gets it from gpio-sim-rig.sh --cache-only): backend gpiod not checked"
fi

finish
