/* What the tests read from /proc and /dev/shm. */
#ifndef SHP_TEST_PROCFS_H
#define SHP_TEST_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Live (not zombie) children of pid, up to max of them; returns how many. */
size_t proc_children(pid_t pid, pid_t *out, size_t max);
/* Live descendants of pid (children, grandchildren, ...). */
size_t proc_descendants(pid_t pid, pid_t *out, size_t max);
/* Whether pid runs (exists and is not a zombie). */
bool proc_alive(pid_t pid);
/* The parent of pid, if pid runs. */
bool proc_parent(pid_t pid, pid_t *ppid);
/* utime + stime of pid, in clock ticks; -1 if unreadable. */
long long proc_cpu_ticks(pid_t pid);
/* The sum of proc_cpu_ticks over n pids. */
long long proc_cpu_ticks_all(const pid_t *pids, size_t n);
/* Open file descriptors of this process. */
int proc_fd_count(void);
/* Entries in /dev/shm of pools created by process creator (a segment's
 * name carries its creator's pid), or of any pool when creator is 0. */
int devshm_count(pid_t creator);
/* devshm_count(0), polled for up to 1 s: another process's pool being
 * created holds a name for a few microseconds (shm_open to shm_unlink),
 * a leak stays. */
int devshm_settled(void);

#endif
