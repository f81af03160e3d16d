# compare_deltas.gp - the paired verdict of deploy/compare.sh: per target and
# comparison, the mean difference in test accuracy over seeds with its 95 %
# t-interval; a bar crossing 0 is no detectable difference.
# gnuplot -e "datafile='OUT/compare_deltas.dat'; outfile='...png'"
#         deploy/compare_deltas.gp
set terminal pngcairo size 900,600 noenhanced
set output outfile
set title "Paired differences in test accuracy (mean, 95 % t-interval over seeds)"
set xlabel "difference (accuracy points)"
set ytics nomirror
set grid xtics
set offsets 0, 0, 0.5, 0.5
unset key
set arrow from 0, graph 0 to 0, graph 1 nohead dt 2 lw 1
plot datafile using 4:1:5:6:ytic(sprintf("%.0f%% %s", 100 * $2, stringcolumn(3))) \
     with xerrorbars lw 2 pt 7 ps 1.2
