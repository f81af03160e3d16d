/* plot.c - gnuplot through a pipe (see plot.h). */
#include "plot.h"

#include <stdlib.h>

int plot_gnuplot(const char *script, const char *what, FILE *progress)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        if (progress)
            fprintf(progress,
                    "%s: gnuplot not found: no plot (install gnuplot-nox)\n",
                    what);
        return 1;
    }
    FILE *g = popen("gnuplot", "w");
    if (!g) return -1;
    int bad = fputs(script, g) < 0;
    int st = pclose(g);
    if (bad || st != 0) {
        if (progress) fprintf(progress, "%s: gnuplot failed\n", what);
        return -1;
    }
    return 0;
}
