#include <criterion/criterion.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "owner.h"
#include "util.h"

Test(owner, self_is_alive_and_names_this_pid, .timeout = 10)
{
	uint64_t w = shp__owner_self();

	cr_assert_neq(w, 0);
	cr_expect_eq(shp__owner_pid(w), getpid());
	cr_expect(shp__owner_alive(w));
	cr_expect_eq(shp__owner_self(), w, "cached word changed");
}

/* Forks a child that sends its owner word to *w, then exits (stay:
 * waits for a signal instead). */
static pid_t child_word(uint64_t *w, bool stay)
{
	int fds[2];
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		uint64_t me = shp__owner_self();

		if (write(fds[1], &me, sizeof(me)) != sizeof(me))
			_exit(1);
		while (stay)
			pause();
		_exit(0);
	}
	cr_assert_eq(read(fds[0], w, sizeof(*w)), sizeof(*w));
	close(fds[0]);
	close(fds[1]);
	return pid;
}

Test(owner, a_fork_gets_its_own_word, .timeout = 10)
{
	uint64_t parent = shp__owner_self(), child = 0;
	pid_t pid = child_word(&child, false);
	int ws;

	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_expect_eq(shp__owner_pid(child), pid);
	cr_expect_neq(child, parent);
}

Test(owner, zombie_and_reaped_process_are_dead, .timeout = 10)
{
	uint64_t w = 0;
	pid_t pid = child_word(&w, true);
	int ws;

	cr_expect(shp__owner_alive(w), "a running child is dead");
	cr_assert_eq(kill(pid, SIGKILL), 0);
	/* Dead but not reaped: a zombie. */
	for (int i = 0; i < 1000 && shp__owner_alive(w); i++)
		sleep_ms(1);
	cr_expect_not(shp__owner_alive(w), "a zombie counts as alive");
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_expect_not(shp__owner_alive(w), "a reaped child counts as alive");
}

Test(owner, reused_pid_with_other_start_is_dead, .timeout = 10)
{
	uint64_t w = shp__owner_self();
	/* The same pid, started one tick later: a different process. */
	uint64_t other = w + (UINT64_C(1) << SHP_OWNER_PID_BITS);

	cr_expect_not(shp__owner_alive(other));
	cr_expect_not(shp__owner_alive(0));
	cr_expect_not(shp__owner_alive(SHP_OWNER_PID_MASK)); /* no such pid */
}
