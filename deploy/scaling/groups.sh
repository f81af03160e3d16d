#!/usr/bin/env bash
# groups.sh - the simulator's prediction for evaluation groups: for group
# sizes 1, 4 and 16 and 16..1024 workers, both schedules, from one finished
# search log; a table (groups.md), the CSVs and, with gnuplot, groups.png
# (speedup and efficiency against workers on log axes, with the ideal).
# usage: deploy/scaling/groups.sh ABCPRUNE CONFIG RUN_DIR OUT_DIR ALPHA,BETA EFF [OVERHEAD] [-- --set ...]
#   RUN_DIR: the finished search (its search.jsonl and baseline)
#   ALPHA,BETA: mpirun -np 2 build/bench_allreduce; EFF: the measured
#   parallel efficiency of a group of 2 (images/s ratio / 2)
#   OVERHEAD: seconds per dispatch (default: fitted from the log)
set -euo pipefail
[ $# -ge 6 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
exe=$1 config=$2 run=$3 out=$4 ar=$5 eff=$6
shift 6
ovh=()
if [ $# -gt 0 ] && [ "$1" != -- ]; then ovh=(--overhead "$1"); shift; fi
[ $# -gt 0 ] && [ "$1" = -- ] && shift
sets=("$@")
mkdir -p "$out"
for g in 1 4 16; do
  "$exe" --out "$run" "${sets[@]}" simulate --workers 16,32,64,128,256,512,1024 \
    --schedule both --group "$g" --allreduce "$ar" --dp-efficiency "$eff" \
    "${ovh[@]}" --csv "$out/groups_g$g.csv" "$config" 2>"$out/groups_g$g.err"
done
/usr/bin/python3 - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
rows = {}
for g in (1, 4, 16):
    for r in csv.DictReader(open("%s/groups_g%d.csv" % (out, g))):
        rows[(g, r["schedule"], int(r["workers"]))] = r
W0 = min(w for (_, _, w) in rows)
base = float(rows[(1, "async", W0)]["wall_s"])
with open(out + "/groups.dat", "w") as dat, open(out + "/groups.md", "w") as md:
    md.write("| workers | g | sync wall s | sync busy | async wall s | async busy "
             "| async speedup vs %d workers, g 1 | efficiency |\n" % W0)
    md.write("|---|---|---|---|---|---|---|---|\n")
    for g in (1, 4, 16):
        for W in sorted({w for (gg, _, w) in rows if gg == g}):
            s, a = rows[(g, "sync", W)], rows[(g, "async", W)]
            sp = base / float(a["wall_s"])
            dat.write("%d %d %s %s %.4f %.4f\n" % (g, W, s["worker_util"],
                      a["worker_util"], sp, sp / (W / W0)))
            md.write("| %d | %d | %.1f | %.0f %% | %.1f | %.0f %% | %.1f | %.2f |\n"
                     % (W, g, float(s["wall_s"]), 100 * float(s["worker_util"]),
                        float(a["wall_s"]), 100 * float(a["worker_util"]),
                        sp, sp / (W / W0)))
        dat.write("\n\n")
print(open(out + "/groups.md").read())
PY
if command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal pngcairo size 1000,420
set output "$out/groups.png"
set multiplot layout 1,2
set logscale xy 2
set key left top
set xlabel "workers"
set ylabel "async speedup (vs 16 workers, g 1)"
f(x) = x / 16.0
plot f(x) with lines dt 2 lc rgb "black" title "ideal", \
  "$out/groups.dat" index 0 using 2:5 with linespoints title "g 1", \
  "$out/groups.dat" index 1 using 2:5 with linespoints title "g 4", \
  "$out/groups.dat" index 2 using 2:5 with linespoints title "g 16"
unset logscale y
set logscale x 2
set yrange [0:1.05]
set ylabel "busy (async solid, sync dashed)"
plot 1 with lines dt 2 lc rgb "black" title "ideal", \
  "$out/groups.dat" index 0 using 2:4 with linespoints lc 1 title "g 1", \
  "$out/groups.dat" index 1 using 2:4 with linespoints lc 2 title "g 4", \
  "$out/groups.dat" index 2 using 2:4 with linespoints lc 3 title "g 16", \
  "$out/groups.dat" index 0 using 2:3 with linespoints lc 1 dt 2 notitle, \
  "$out/groups.dat" index 1 using 2:3 with linespoints lc 2 dt 2 notitle, \
  "$out/groups.dat" index 2 using 2:3 with linespoints lc 3 dt 2 notitle
unset multiplot
GP
  echo "groups.sh: $out/groups.png"
fi
