/* plot.h - PNG plots through gnuplot, when it is installed: a run's
 * results never depend on it (the data files are written either way). */
#ifndef ABC_PLOT_H
#define ABC_PLOT_H

#include <stdio.h>

/* Runs gnuplot on script (its whole text). Returns 0 when gnuplot ran and
 * exited 0; 1 when it is not installed (a note on progress, may be NULL);
 * -1 when it failed. */
int plot_gnuplot(const char *script, const char *what, FILE *progress);

#endif
