#!/bin/sh
# /init of the gpio-sim rig's guest (see gpio-sim-rig.sh).  Builds the bench board on a
# gpio-sim chip, runs the real thecald (backend gpiod) on it over a private bus, and checks
# the pump's behaviour on the lines.  Results: "RIG OK|FAIL|NOTE: ..." lines on the console,
# "RIG done" at the end.  Timing in a TCG guest means nothing: everything is checked in step
# pulses and loop cycles, counted by the kernel's gpio_value tracepoint (each cycle toggles
# the heartbeat line once, so heartbeat edges are loop cycles).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
echo "RIG NOTE: $(uname -r) $(uname -v | grep -o 'PREEMPT_RT' || echo 'no PREEMPT_RT') $(nproc) cpus"
FAILS=0
ok() { echo "RIG OK: $*"; }
fail() { echo "RIG FAIL: $*"; FAILS=$((FAILS + 1)); }
note() { echo "RIG NOTE: $*"; }
check() { d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
finish() {
  [ -n "${TD:-}" ] && kill "$TD" 2>/dev/null
  echo "RIG done fails=$FAILS uptime=$(cut -d' ' -f1 /proc/uptime)"
  poweroff -f
}

# ---- the board: one gpio-sim bank, lines named as on the bench wiring --------------------
modprobe gpio-sim || { fail "modprobe gpio-sim"; finish; }
mount -t configfs none /sys/kernel/config
C=/sys/kernel/config/gpio-sim/bench
mkdir $C $C/bank0
echo 16 > $C/bank0/num_lines
echo thecal-bench > $C/bank0/label
set -- PUMP_nEN PUMP_STEP PUMP_DIR HEARTBEAT BUZZER DRV_nFAULT ENCODER P_HIGH P_LOW BOLUS_nBTN BATT_nLOW
i=0
for n in "$@"; do mkdir $C/bank0/line$i; echo "$n" > $C/bank0/line$i/name; i=$((i + 1)); done
echo 1 > $C/live || { fail "gpio-sim live"; finish; }
S=/sys/devices/platform/$(cat $C/dev_name)/$(cat $C/bank0/chip_name)
EN=0 STEP=1 DIR=2 HB=3 BUZ=4 FAULT=5 ENC=6 OCC=7 DISC=8 BTN=9 BATT=10
val() { cat $S/sim_gpio$1/value; }
pull() { echo "pull-$2" > $S/sim_gpio$1/pull; }
# The board's resistors: nENBL pulled up (driver disabled while nobody drives it), the
# battery monitor's open-drain output pulled up.  nFAULT and the button get their pull-ups
# from thecald's bias request.
pull $EN up; pull $BATT up
BASE=
for d in /sys/class/gpio/gpiochip*; do [ "$(cat $d/label 2>/dev/null)" = thecal-bench ] && BASE=$(cat $d/base); done
if [ -z "$BASE" ]; then
  mount -t debugfs none /sys/kernel/debug 2>/dev/null
  BASE=$(grep -o 'GPIOs [0-9]*-[0-9]*.*thecal-bench' /sys/kernel/debug/gpio | sed 's/GPIOs \([0-9]*\)-.*/\1/')
fi
[ -n "$BASE" ] || { fail "global GPIO number base of the sim chip"; finish; }
g() { echo $((BASE + $1)); }

# ---- tracing: the kernel's own record of every value driven on a line ---------------------
mount -t tracefs none /sys/kernel/tracing 2>/dev/null
mount -t debugfs none /sys/kernel/debug 2>/dev/null
TR=/sys/kernel/tracing
[ -d $TR/events/gpio/gpio_value ] || { fail "gpio_value tracepoint"; finish; }
echo mono > $TR/trace_clock
echo 8192 > $TR/buffer_size_kb
trace_on() {  # trace_on LINE...: record gpio_value on those lines only
  echo 0 > $TR/tracing_on; echo > $TR/trace
  f=""; for l in "$@"; do f="${f:+$f || }gpio == $(g $l)"; done
  echo "$f" > $TR/events/gpio/gpio_value/filter
  echo 1 > $TR/events/gpio/gpio_value/enable
  echo 1 > $TR/tracing_on
}
trace_off() { echo 0 > $TR/tracing_on; grep -e gpio_value -e tracing_mark_write $TR/trace > /tmp/trace.txt; }
# edges LINE LEVEL: how many times LEVEL was driven on LINE in /tmp/trace.txt
edges() { grep -c "gpio_value: $(g $1) set $2\$" /tmp/trace.txt; }

# ---- the bus and the daemon --------------------------------------------------------------
BUS=unix:path=/run/thecal-bus
dbus-daemon --config-file=/etc/thecal/bus.conf --nofork --nopidfile > /tmp/bus.log 2>&1 &
for i in $(seq 50); do [ -S /run/thecal-bus ] && break; sleep 0.1; done
ctl() { thecalctl --address $BUS "$@"; }
diag() { ctl diagnostics | awk -v k="$1:" '$1 == k { print $2 }'; }
state() { ctl --json status | sed 's/.*"state":"\([a-z_]*\)".*/\1/'; }
has_alarm() { ctl --json alarms | grep -q "\"code\":\"$1\",\"priority\":\"$2\""; }
wait_for() {  # wait_for SECONDS COMMAND...
  n=$(($1 * 10)); shift
  while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}
start_thecald() {
  thecald --config /etc/thecal/thecald.yaml --bus $BUS > /tmp/thecald.log 2>&1 &
  TD=$!
  wait_for 30 ctl status > /dev/null
}

trace_on $EN $STEP $HB
start_thecald || { fail "thecald starts on the gpio-sim board"; cat /tmp/thecald.log; finish; }
ok "thecald starts with backend gpiod (chip by label, lines by name and offset)"
sleep 0.5
trace_off
check "enable is driven inactive at start (nENBL high)" [ "$(val $EN)" = 1 ]
first=$(grep -m1 "gpio_value: $(g $EN) " /tmp/trace.txt | sed 's/.*set //')
check "the first value driven on enable is inactive" [ "${first:-none}" = 1 ]
check "heartbeat toggles every cycle" [ "$(edges $HB 1)" -gt 10 ]
check "dir is driven forward" [ "$(val $DIR)" = 1 ]
check "fault and bolus button pulled up by the bias request" [ "$(val $FAULT)$(val $BTN)" = 11 ]
held=$(grep -c '|thecald' /sys/kernel/debug/gpio)
check "all 11 lines held by consumer thecald ($held)" [ "$held" = 11 ]

out=$(thecald --config /etc/thecal/thecald.yaml --bus $BUS 2>&1); rc=$?
echo "$out" | tail -n 1
check "a second thecald refuses the busy lines with a clear error" \
  sh -c "[ $rc -ne 0 ] && echo \"\$0\" | grep -q 'Device or resource busy'" "$out"

# ---- prime: steps on the step line, count and rate; the encoder -------------------------
ctl load /etc/thecal/prescription.yaml > /dev/null || fail "load prescription"
ctl refill --withdrawn "0 mL" "20 mL" || fail "refill"
rm -f /tmp/enc.stop; echo 0 > /tmp/enc.count
encoder() {  # the motor's encoder: a pulse every 100 ms (8 steps at 80 steps/s)
  n=0
  while [ ! -e /tmp/enc.stop ]; do
    pull $ENC up; sleep 0.05; pull $ENC down; sleep 0.05; n=$((n + 1)); echo $n > /tmp/enc.count
  done
}
encoder & EP=$!
trace_on $STEP $EN
s0=$(diag StepsIssued)
ctl prime "0.22 mL" || fail "prime"
wait_for 120 sh -c '[ "$(thecalctl --address '$BUS' --json status | grep -o "\"catheter_primed\":true")" ]'
check "priming finishes" [ $? = 0 ]
sleep 0.3
trace_off
touch /tmp/enc.stop; wait $EP
s1=$(diag StepsIssued)
rises=$(edges $STEP 1); falls=$(edges $STEP 0)
note "prime 0.22 mL: StepsIssued $s0 -> $s1, step line rising edges $rises, falling $falls"
check "880 steps issued for 0.22 mL at 0.25 uL/step" [ $((s1 - s0)) = 880 ]
check "880 pulses on the step line, each high then low" [ "$rises" = 880 -a "$falls" = 880 ]
rate=$(grep "gpio_value: $(g $STEP) set 1\$" /tmp/trace.txt | awk '
  { t = $0; sub(/: gpio_value.*/, "", t); n = split(t, a, " "); ts = a[n] + 0; if (NR == 1) t0 = ts; t1 = ts }
  END { if (NR > 1) printf "%.2f", (NR - 1) / (t1 - t0); else print 0 }')
note "step rate $rate steps/s (programmed 72 mL/h = 80 steps/s)"
check "step rate within 3 % of the programmed 80 steps/s" awk -v r="$rate" 'BEGIN { exit !(r > 77.6 && r < 82.4) }'
enc=$(cat /tmp/enc.count); seen=$(diag EncoderPulses)
note "encoder pulses driven $enc, counted by thecald $seen"
check "every encoder pulse counted (edge events)" [ "$seen" = "$enc" ]
check "enable back to inactive after priming" [ "$(val $EN)" = 1 ]

# ---- occlusion while stepping: stop within 2 loop cycles, high alarm, buzzer -----------------
encoder & EP=$!; rm -f /tmp/enc.stop
# A primed catheter cannot be primed again (the core refuses: it would push drug at the
# priming rate); infuse with a clinician bolus on top so the motor is enabled and stepping.
ctl start || fail "start"
ctl clinician-bolus "0.5 mg" --over "10 min" || fail "clinician bolus"
wait_for 10 sh -c "[ \$(cat $S/sim_gpio$EN/value) = 0 ]" || fail "motor enabled while infusing"
sleep 1
trace_on $STEP $EN $HB $BUZ
sleep 0.2
echo "OCCLUSION" > $TR/trace_marker
pull $OCC up
sleep 1
trace_off
touch /tmp/enc.stop; wait $EP
cycles=$(awk -v en="gpio_value: $(g $EN) set 1" -v hb="gpio_value: $(g $HB) " '
  /tracing_mark_write: OCCLUSION/ { m = 1; next }
  m && index($0, hb) { c++ }
  m && index($0, en) { print c + 0; exit }' /tmp/trace.txt)
late_steps=$(awk -v en="gpio_value: $(g $EN) set 1" -v st="gpio_value: $(g $STEP) set 1" '
  index($0, en) { d = 1 } d && index($0, st) { c++ } END { print c + 0 }' /tmp/trace.txt)
note "occlusion: enable driven inactive after ${cycles:-never} heartbeat cycle(s); steps after it: $late_steps"
check "occlusion stops the motor within 2 loop cycles (S4)" [ -n "$cycles" ] && [ "${cycles:-9}" -le 2 ]
check "no step pulse after the motor is disabled" [ "$late_steps" = 0 ]
has_alarm occlusion high && [ "$(state)" = stopped ] && ok "alarm occlusion (high), state stopped" || fail "alarm occlusion (high), state stopped: $(ctl alarms; state)"
if [ "$(edges $BUZ 1)" -ge 1 ]; then ok "the buzzer sounds for the high alarm"
else note "the buzzer line stayed silent: this core drives no buzzer pattern yet (SPEC S5)"; fi
pull $OCC down
ctl ack occlusion || fail "ack occlusion"
wait_for 5 sh -c "! thecalctl --address $BUS --json alarms | grep -q occlusion"
check "occlusion alarm clears once acknowledged and its cause is gone" [ $? = 0 ]

# ---- the driver's nFAULT line ------------------------------------------------------------
pull $FAULT down
wait_for 5 has_alarm driver_fault high
check "nFAULT low raises the high alarm driver_fault" [ $? = 0 ]
pull $FAULT up
ctl ack driver_fault || fail "ack driver_fault"
wait_for 5 sh -c "! thecalctl --address $BUS --json alarms | grep -q driver_fault"
check "driver_fault clears once acknowledged and released" [ $? = 0 ]

# ---- the bolus button (debounced, active low) -----------------------------------------------
ev0=$(ctl events 1000 | wc -l)
pull $BTN down; sleep 0.01; pull $BTN up; sleep 0.2      # a 10 ms glitch: below the 20 ms debounce
pull $BTN down; sleep 0.3; pull $BTN up; sleep 0.5       # a real press
ev1=$(ctl events 1000 | wc -l)
if ctl events 1000 | grep -qi 'button\|bolus'; then ok "the bolus button reaches the pump (event log)"
else note "bolus button pressed (debounced level read by the backend); the core logs no button event yet ($ev0 -> $ev1 events)"; fi

# ---- SIGTERM while the motor is enabled: enable driven inactive, lines released --------------
encoder & EP=$!; rm -f /tmp/enc.stop
ctl resume || fail "resume after the alarms"
wait_for 10 sh -c "[ \$(cat $S/sim_gpio$EN/value) = 0 ]"
check "motor enabled while infusing (nENBL low)" [ "$(val $EN)" = 0 ]
trace_on $EN
kill -TERM $TD; wait $TD; rc=$?; TD=
trace_off
touch /tmp/enc.stop; wait $EP
check "thecald exits 0 on SIGTERM" [ $rc = 0 ]
check "SIGTERM: thecald drove enable inactive before exiting" [ "$(edges $EN 1)" -ge 1 ]
check "SIGTERM: enable inactive after exit" [ "$(val $EN)" = 1 ]
check "SIGTERM: every line released" sh -c "! grep -q '|thecald' /sys/kernel/debug/gpio"

# ---- an ioctl error at run time: the chip goes away under a running daemon ------------------
start_thecald || fail "thecald restarts"
echo 0 > $C/live
wait_for 10 has_alarm hardware_fault high; r=$?
check "GPIO chip gone at run time: high alarm hardware_fault, daemon alive" sh -c "[ $r = 0 ] && kill -0 $TD"
kill -TERM $TD; wait $TD; rc=$?; TD=
check "thecald still stops cleanly (exit 0) after losing its chip" [ $rc = 0 ]
tail -n 5 /tmp/thecald.log
finish
