# Plots of thecal-bench's data files.  gnuplot -e "dir='DATA_DIR'; label='host'" bench/plots.gp
# Writes DATA_DIR/*.svg.
if (!exists("dir")) dir = "bench/results"
if (!exists("label")) label = "host"
set terminal svg size 900,520 dynamic enhanced font "sans,12" background "#ffffff"
set grid
set key top right

# ---- wake-up latency histograms: cyclictest vs thecald, per condition ----------------------
do for [cond in "idle stress dbus_flood"] {
  f = dir."/latency-".cond.".dat"
  if (system("test -s ".f." && echo y") eq "y") {
    set output dir."/latency-".cond.".svg"
    set title "Dosing-loop wake-up latency, ".cond." (".label."): thecald vs cyclictest, same priority, period, CPU"
    set xlabel "wake-up latency (us, 1 us bins, log; bin [n, n+1) drawn at n+1)"
    set ylabel "cycles (log)"
    set logscale xy
    set yrange [0.8:*]
    set xrange [1:*]
    plot f using ($1+1):($2>0?$2:1/0) with steps lw 2 lc rgb "#1f77b4" title "cyclictest", \
         f using ($1+1):($3>0?$3:1/0) with steps lw 2 lc rgb "#d62728" title "thecald"
    unset logscale xy
    set yrange [*:*]
    set xrange [*:*]
  }
}

# ---- trumpet curves (IEC 60601-2-24) ---------------------------------------------------------
do for [period in "second-hour day"] {
  pre = (period eq "day") ? "trumpet-day-" : "trumpet-"
  set output dir."/trumpet".((period eq "day") ? "-day" : "").".svg"
  set title "Trumpet curves from the simulator (".((period eq "day") ? "hours 1 to 25" : "second hour")."): Ep(max), Ep(min) per observation window"
  set xlabel "observation window (min)"
  set ylabel "error (% of programmed volume)"
  set xrange [0:33]
  set xtics (2, 5, 11, 19, 31)
  set yrange [*:*]
  plot for [p in "continuous flex trial ziconotide"] dir."/".pre.p.".dat" using 1:2 with linespoints lw 2 pt 7 title p." Ep(max)", \
       for [p in "continuous flex trial ziconotide"] dir."/".pre.p.".dat" using 1:3 with linespoints lw 2 pt 5 dt 2 title p." Ep(min)", \
       0 with lines lc rgb "black" notitle
  set xtics autofreq
  set xrange [*:*]
}

# ---- cumulative error in steps over the simulated month (S6) ---------------------------------
set output dir."/cumulative-error.svg"
set title "S6 counting error: steps x step volume + what S1 held back - the prescription's integral (|error| < 1 step)"
set xlabel "simulated days"
set ylabel "error (steps)"
set yrange [-1.2:1.6]
set key top center horizontal
plot for [p in "continuous flex trial ziconotide"] dir."/cumulative-".p.".dat" using 1:3 with lines lw 2 title p, \
     1 with lines lc rgb "black" dt 2 notitle, -1 with lines lc rgb "black" dt 2 notitle
