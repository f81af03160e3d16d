#!/usr/bin/python3
"""collect.py - the scaling study's tables from its run directory (stdlib only).

  collect.py real OUT        OUT/points.txt + each point's search.jsonl and
                             best.yaml -> OUT/real.csv (one row per point),
                             OUT/real_summary.csv (mean/min/max over seeds
                             per sn, ranks, schedule, with the speedup over
                             1 rank), OUT/cycles.csv (mean best fitness per
                             cycle per sn and schedule) and OUT/fitness.csv
                             (final fitness mean/min/max per sn, schedule)
  collect.py validate OUT    OUT/validation/*.csv (one simulate row per real
                             point) + OUT/real.csv -> OUT/sim_validation.csv
                             (predicted vs real wall time and utilisation,
                             relative errors) and prints the median and max
                             relative errors
  collect.py simplot OUT     OUT/sim.csv -> OUT/sim_plot.csv (ranks =
                             workers + 1, speedup over 1 worker)

Errors name the file (and line) and exit 1.
"""
import csv
import json
import os
import re
import statistics
import sys


def die(msg):
    sys.exit("collect.py: " + msg)


def read_log(path):
    """The done line, the cycle lines' best fitness, and the eval count."""
    done, cycles, evals = None, {}, 0
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except ValueError as e:
                    die("%s:%d: not JSON: %s" % (path, n, e))
                ev = r.get("event")
                if ev == "eval":
                    evals += 1
                elif ev == "cycle":
                    cycles[int(r["cycle"])] = float(r["best_fitness"])
                elif ev == "done":
                    done = r
    except OSError as e:
        die("%s: %s" % (path, e.strerror))
    if done is None:
        die("%s: no done line: the search did not finish" % path)
    return done, [cycles[c] for c in sorted(cycles)], evals


def best_flops(path):
    try:
        text = open(path).read()
    except OSError as e:
        die("%s: %s" % (path, e.strerror))
    m = re.search(r"^flops: (\d+)", text, re.M)
    if not m:
        die("%s: no flops line" % path)
    return int(m.group(1))


def read_points(out):
    path = os.path.join(out, "points.txt")
    pts = []
    try:
        for n, line in enumerate(open(path), 1):
            f = line.split()
            if len(f) != 7:
                die("%s:%d: expected 7 fields" % (path, n))
            pts.append(dict(zip(
                ["sn", "ranks", "workers", "threads", "schedule", "seed", "dir"],
                f)))
    except OSError as e:
        die("%s: %s" % (path, e.strerror))
    return pts


REAL_COLS = ["sn", "ranks", "workers", "threads", "schedule", "seed", "wall_s",
             "evaluations", "evals_per_s", "worker_util", "coord_overhead",
             "best_fitness_per_cycle", "final_best_fitness", "final_flops"]


def write_csv(path, cols, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])


def cmd_real(out):
    rows = []
    for p in read_points(out):
        d = os.path.join(out, p["dir"])
        done, cyc, nev = read_log(os.path.join(d, "search.jsonl"))
        el = float(done["elapsed_s"])
        ev = int(done["evaluations"])
        if ev != nev:
            die("%s: done says %d evaluations, %d eval lines" % (d, ev, nev))
        rows.append(dict(p, wall_s="%.2f" % el, evaluations=ev,
                         evals_per_s="%.4f" % (ev / el),
                         worker_util="%.4f" % float(done["worker_busy"]),
                         coord_overhead="%.4f" % (float(done["rank0_cpu_s"]) / el),
                         best_fitness_per_cycle=";".join("%.6f" % b for b in cyc),
                         final_best_fitness="%.6f" % float(done["best_fitness"]),
                         final_flops=best_flops(os.path.join(d, "best.yaml"))))
    write_csv(os.path.join(out, "real.csv"), REAL_COLS, rows)

    # per (sn, ranks, schedule): over seeds. Every CSV for the plots lists
    # each series (sn, schedule) in one run of rows: gnuplot breaks a line
    # at the rows it skips.
    groups = {}
    for r in rows:
        groups.setdefault((int(r["sn"]), int(r["ranks"]), r["schedule"]),
                          []).append(r)
    summ = []
    for (sn, ranks, sch), rs in sorted(groups.items(),
                                       key=lambda g: (g[0][0], g[0][2], g[0][1])):
        walls = [float(r["wall_s"]) for r in rs]
        base = groups.get((sn, 1, sch))
        w1 = statistics.mean(float(r["wall_s"]) for r in base) if base else 0
        summ.append(dict(sn=sn, ranks=ranks, workers=rs[0]["workers"],
                         schedule=sch, runs=len(rs),
                         wall_mean="%.3f" % statistics.mean(walls),
                         wall_min="%.3f" % min(walls),
                         wall_max="%.3f" % max(walls),
                         speedup="%.4f" % (w1 / statistics.mean(walls)
                                           if w1 else 0),
                         util_mean="%.4f" % statistics.mean(
                             float(r["worker_util"]) for r in rs)))
    write_csv(os.path.join(out, "real_summary.csv"),
              ["sn", "ranks", "workers", "schedule", "runs", "wall_mean",
               "wall_min", "wall_max", "speedup", "util_mean"], summ)

    # best fitness per cycle, mean over every run of an sn and schedule
    cyc_rows, fit_rows = [], []
    by = {}
    for r in rows:
        by.setdefault((int(r["sn"]), r["schedule"]), []).append(r)
    for (sn, sch), rs in sorted(by.items(), key=lambda g: (g[0][1], g[0][0])):
        per = [[float(x) for x in r["best_fitness_per_cycle"].split(";")]
               for r in rs]
        for c in range(min(len(x) for x in per)):
            v = [x[c] for x in per]
            cyc_rows.append(dict(sn=sn, schedule=sch, cycle=c,
                                 best_mean="%.6f" % statistics.mean(v),
                                 best_min="%.6f" % min(v),
                                 best_max="%.6f" % max(v)))
        fin = [float(r["final_best_fitness"]) for r in rs]
        fit_rows.append(dict(sn=sn, schedule=sch, runs=len(rs),
                             final_mean="%.6f" % statistics.mean(fin),
                             final_min="%.6f" % min(fin),
                             final_max="%.6f" % max(fin)))
    write_csv(os.path.join(out, "cycles.csv"),
              ["sn", "schedule", "cycle", "best_mean", "best_min", "best_max"],
              cyc_rows)
    write_csv(os.path.join(out, "fitness.csv"),
              ["sn", "schedule", "runs", "final_mean", "final_min",
               "final_max"], fit_rows)


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        die("%s: %s" % (path, e.strerror))


def rel(pred, real):
    return (pred - real) / real if real else float("nan")


def cmd_validate(out):
    pts = read_points(out)
    rrows = read_csv(os.path.join(out, "real.csv"))
    if len(rrows) != len(pts):
        die("%s: %d rows for %d points" % (os.path.join(out, "real.csv"),
                                           len(rrows), len(pts)))
    refs = {}
    rp = os.path.join(out, "validation", "refs.txt")
    try:
        for line in open(rp):
            name, ref = line.split()
            refs[name] = ref
    except (OSError, ValueError):
        die("%s: unreadable" % rp)
    rows, ew, eu = [], [], []
    for p, r in zip(pts, rrows):
        name = os.path.basename(p["dir"])
        sim = read_csv(os.path.join(out, "validation", name + ".csv"))
        if len(sim) != 1:
            die("%s: expected one row" % name)
        s = sim[0]
        rw, sw = float(r["wall_s"]), float(s["wall_s"])
        ru, su = float(r["worker_util"]), float(s["worker_util"])
        row = dict(sn=p["sn"], ranks=p["ranks"], workers=p["workers"],
                   schedule=p["schedule"], seed=p["seed"],
                   ref_log=refs.get(name, "?"),
                   real_wall_s="%.2f" % rw, sim_wall_s="%.2f" % sw,
                   wall_rel_err="%.4f" % rel(sw, rw),
                   real_util="%.4f" % ru, sim_util="%.4f" % su,
                   util_rel_err="%.4f" % rel(su, ru))
        ew.append(abs(rel(sw, rw)))
        eu.append(abs(rel(su, ru)))
        rows.append(row)
    write_csv(os.path.join(out, "sim_validation.csv"),
              ["sn", "ranks", "workers", "schedule", "seed", "ref_log",
               "real_wall_s", "sim_wall_s", "wall_rel_err", "real_util",
               "sim_util", "util_rel_err"], rows)
    print("simulator vs real over %d points: wall time |rel err| median "
          "%.1f%% max %.1f%%; utilisation |rel err| median %.1f%% max %.1f%%"
          % (len(rows), 100 * statistics.median(ew), 100 * max(ew),
             100 * statistics.median(eu), 100 * max(eu)))


def cmd_simplot(out):
    rows = read_csv(os.path.join(out, "sim.csv"))
    base = {}
    for r in rows:
        if r["workers"] == "1":
            base[(r["sn"], r["schedule"])] = float(r["wall_s"])
    res = []
    rows.sort(key=lambda r: (int(r["sn"]), r["schedule"], int(r["workers"])))
    for r in rows:
        b = base.get((r["sn"], r["schedule"]))
        res.append(dict(sn=r["sn"], schedule=r["schedule"],
                        workers=r["workers"], ranks=int(r["workers"]) + 1,
                        wall_s=r["wall_s"], worker_util=r["worker_util"],
                        speedup="%.4f" % (b / float(r["wall_s"]) if b else 0)))
    write_csv(os.path.join(out, "sim_plot.csv"),
              ["sn", "schedule", "workers", "ranks", "wall_s", "worker_util",
               "speedup"], res)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("real", "validate",
                                                 "simplot"):
        sys.exit(__doc__)
    {"real": cmd_real, "validate": cmd_validate,
     "simplot": cmd_simplot}[sys.argv[1]](sys.argv[2])
