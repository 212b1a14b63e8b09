/* byoc-dnnl's run loop: executes a program's primitives from C.
 *
 * Why C: a team of primitives that run side by side, one OpenMP thread each
 * (a 1x1 convolution split by output channels; or a chain per thread: its
 * part of a 1x1 convolution, then the depthwise part that reads it), must be
 * started from an OpenMP region; a region whose body is a Python callback
 * pays about 100 us of GIL hand-offs, more than the split saves. Every other
 * step is one dnnl_primitive_execute call, as in the Python loop, minus the
 * interpreter.
 *
 * oneDNN is reached only through the two function pointers passed in, so this
 * file needs no oneDNN headers and links nothing but libgomp (the copy libdnnl
 * already uses).
 */
#include <omp.h>

typedef int (*bd_exec_fn)(void *prim, void *stream, int nargs, const void *args);
typedef int (*bd_wait_fn)(void *stream);

typedef struct {
    void *prim;
    const void *args; /* dnnl_exec_arg_t[nargs] */
    int nargs;
    int team;  /* steps from here on that run side by side; 1: alone */
    int chain; /* on a team's first step: steps each member runs in order */
} bd_step;

/* Run steps[0..n); streams[t] serves team member t (streams[0] lone steps).
 * A team of `team` steps with `chain` c has team / c members; member k runs
 * steps k*c .. k*c + c - 1 of the team, in order.
 * Returns 0, or the first failing dnnl_status_t with its step in *failed. */
int bd_run(bd_exec_fn exec, bd_wait_fn wait, void *const *streams, int n_streams,
           const bd_step *steps, int n, int *failed) {
    int i = 0;
    while (i < n) {
        int team = steps[i].team;
        if (team <= 1) {
            int st = exec(steps[i].prim, streams[0], steps[i].nargs, steps[i].args);
            if (st) {
                *failed = i;
                return st;
            }
            i += 1;
            continue;
        }
        int chain = steps[i].chain > 1 ? steps[i].chain : 1;
        int members = team / chain;
        if (team > n - i || team % chain || members > n_streams) {
            *failed = i;
            return 2; /* dnnl_invalid_arguments: a malformed plan */
        }
        int bad = 0, bad_at = i;
#pragma omp parallel num_threads(members)
        {
            /* The runtime may grant fewer threads: members are dealt round. */
            int t = omp_get_thread_num(), got = omp_get_num_threads();
            for (int k = t; k < members; k += got) {
                for (int j = 0; j < chain; j++) {
                    int at = i + k * chain + j;
                    const bd_step *s = &steps[at];
                    int st = exec(s->prim, streams[k], s->nargs, s->args);
                    if (!st)
                        st = wait(streams[k]);
                    if (st) {
#pragma omp critical(bd_run_status)
                        if (!bad || at < bad_at) {
                            bad = st;
                            bad_at = at;
                        }
                        break;
                    }
                }
            }
        }
        if (bad) {
            *failed = bad_at;
            return bad;
        }
        i += team;
    }
    int st = wait(streams[0]);
    if (st)
        *failed = n;
    return st;
}
