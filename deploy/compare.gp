# compare.gp - test accuracy vs MACs per method (deploy/compare.sh).
# gnuplot -e "datafile='...'; methods='abc slim ...'; outfile='...png'"
#         deploy/compare.gp
set terminal pngcairo size 900,600 noenhanced
set output outfile
set title "Pruned test accuracy vs FLOPs (mean +- sd over seeds)"
set xlabel "MACs per image (M)"
set ylabel "test accuracy (%)"
set key bottom right
set grid
plot for [i=1:words(methods)] datafile index (i-1) using 1:2:3 \
     with yerrorlines title word(methods, i) lw 2 pt 7
