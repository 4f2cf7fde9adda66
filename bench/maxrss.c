/* bench.memory's launcher: runs PROGRAM as a child of this small process and reports that
 * child's peak resident set, wait4's ru_maxrss (KiB on Linux), as the last line of stderr:
 * "maxrss_kb N". Exits with the child's status (128 + the signal when one ended it).
 *
 * Why not wait4 in the benchmark itself: at exec the kernel folds the replaced address
 * space's high-water mark into the process's ru_maxrss, and a child spawned by the
 * benchmark (vfork-style or forked) starts from the benchmark's own address space, so it
 * would report at least the benchmark's peak. Forked from here, the floor is this
 * program's few hundred KiB.
 *
 *     maxrss PROGRAM [ARG...]     (PROGRAM an absolute path; the environment is passed on)
 */
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: maxrss PROGRAM [ARG...]\n", stderr);
        return 2;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("maxrss: fork");
        return 127;
    }
    if (pid == 0) {
        /* The child ends with this process, which the benchmark may SIGKILL. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
        execv(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) {
        perror("maxrss: wait4");
        return 127;
    }
    fprintf(stderr, "\nmaxrss_kb %ld\n", usage.ru_maxrss);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
