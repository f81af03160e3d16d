/* main.c - the abcprune program's entry: the one file that sees both roles.
 * It is compiled into the executable only, never into a folder's library:
 * the command line (coordinator/) gets the worker loop (worker/) as a
 * function, so coordinator/ and worker/ never include each other. */
#include "roles.h"
#include "worker.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv, worker_serve);
}
