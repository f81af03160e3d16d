# plots.gp - the scaling study's three plots (headless, pngcairo), from the
# CSVs deploy/scaling/collect.py writes into the run directory.
#   gnuplot -e "dir='runs/scaling'; sns='4 8'; simsns='4 8 64'" deploy/scaling/plots.gp
# (sns: the colony sizes of the real runs, simsns: the simulated ones)
# writes dir/scaling_time.png     (a) search wall time and speedup vs ranks,
#                                     sync vs async: real runs (points, mean
#                                     over seeds) and the simulator (lines,
#                                     ranks = workers + 1), log x axis
#        dir/scaling_cycles.png   (b) best fitness vs cycle per colony size
#        dir/scaling_fitness.png  (c) final fitness vs colony size, min/max
#                                     over seeds as error bars
if (!exists("dir")) dir = "runs/scaling"
if (!exists("sns")) sns = "4 8"
if (!exists("simsns")) simsns = sns
set datafile separator ","
set datafile columnheaders
set terminal pngcairo size 1400,560 font ",10"
set grid
set key top right font ",9"

real = dir."/real_summary.csv"
sim = dir."/sim_plot.csv"
is(sn, sch) = (column("sn") == sn && strcol("schedule") eq sch)
pick(sn, sch, x) = is(sn, sch) ? x : 1/0

# (a) wall time and speedup vs ranks
set output dir."/scaling_time.png"
set multiplot layout 1,2 title "ABC search: wall time and speedup vs ranks (real: points, simulated: lines)"
set logscale x 2
set logscale y
set xlabel "ranks (rank 0 + workers; 1 = in-process)"
set ylabel "search wall time (s)"
plot for [s in sns] real using (pick(s+0, "sync", column("ranks"))):"wall_mean" \
       with linespoints pt 7 lw 2 title sprintf("real sync SN %s", s), \
     for [s in sns] real using (pick(s+0, "async", column("ranks"))):"wall_mean" \
       with linespoints pt 5 lw 2 dt 2 title sprintf("real async SN %s", s), \
     for [s in simsns] sim using (pick(s+0, "sync", column("ranks"))):"wall_s" \
       with lines lw 1 title sprintf("sim sync SN %s", s), \
     for [s in simsns] sim using (pick(s+0, "async", column("ranks"))):"wall_s" \
       with lines lw 1 dt 3 title sprintf("sim async SN %s", s)
set ylabel "speedup over 1 rank (sim: over 1 worker)"
unset logscale y
set logscale y 2
plot for [s in sns] real using (pick(s+0, "sync", column("ranks"))):"speedup" \
       with linespoints pt 7 lw 2 title sprintf("real sync SN %s", s), \
     for [s in sns] real using (pick(s+0, "async", column("ranks"))):"speedup" \
       with linespoints pt 5 lw 2 dt 2 title sprintf("real async SN %s", s), \
     for [s in simsns] sim using (pick(s+0, "sync", column("ranks"))):"speedup" \
       with lines lw 1 title sprintf("sim sync SN %s", s), \
     for [s in simsns] sim using (pick(s+0, "async", column("ranks"))):"speedup" \
       with lines lw 1 dt 3 title sprintf("sim async SN %s", s)
unset multiplot
unset logscale

# (b) best fitness per cycle
set terminal pngcairo size 800,560 font ",10"
set output dir."/scaling_cycles.png"
set title "best fitness vs cycle (mean over seeds and rank counts; 0 = init)"
set xlabel "cycle"
set ylabel "best fitness (validation accuracy)"
set key bottom right
set xtics 1
cyc = dir."/cycles.csv"
plot for [s in sns] cyc using (pick(s+0, "sync", column("cycle"))):"best_mean" \
       with linespoints pt 7 lw 2 title sprintf("sync SN %s", s), \
     for [s in sns] cyc using (pick(s+0, "async", column("cycle"))):"best_mean" \
       with linespoints pt 5 lw 2 dt 2 title sprintf("async SN %s", s)
set xtics autofreq

# (c) final fitness vs colony size
set output dir."/scaling_fitness.png"
set title "final best fitness vs colony size (mean, min/max over seeds and rank counts)"
set xlabel "colony size SN"
set ylabel "final best fitness"
set offsets 1, 1, 0.01, 0.01
fit_csv = dir."/fitness.csv"
plot fit_csv using (strcol("schedule") eq "sync" ? column("sn") - 0.1 : 1/0):"final_mean":"final_min":"final_max" \
       with yerrorlines pt 7 lw 2 title "sync", \
     fit_csv using (strcol("schedule") eq "async" ? column("sn") + 0.1 : 1/0):"final_mean":"final_min":"final_max" \
       with yerrorlines pt 5 lw 2 dt 2 title "async"
