#include <criterion/criterion.h>
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

Test(owner, a_fork_gets_its_own_word, .timeout = 10)
{
	uint64_t parent = shp__owner_self();
	int fds[2];
	uint64_t child = 0;
	pid_t pid;
	int ws;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		uint64_t w = shp__owner_self();

		_exit(write(fds[1], &w, sizeof(w)) == sizeof(w) ? 0 : 1);
	}
	cr_assert_eq(read(fds[0], &child, sizeof(child)), sizeof(child));
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_expect_eq(shp__owner_pid(child), pid);
	cr_expect_neq(child, parent);
	close(fds[0]);
	close(fds[1]);
}

Test(owner, zombie_and_reaped_process_are_dead, .timeout = 10)
{
	int fds[2];
	uint64_t w = 0;
	pid_t pid;
	int ws;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		uint64_t me = shp__owner_self();

		if (write(fds[1], &me, sizeof(me)) != sizeof(me))
			_exit(1);
		pause();
		_exit(0);
	}
	cr_assert_eq(read(fds[0], &w, sizeof(w)), sizeof(w));
	cr_expect(shp__owner_alive(w), "a running child is dead");
	cr_assert_eq(kill(pid, SIGKILL), 0);
	/* Dead but not reaped: a zombie. */
	for (int i = 0; i < 1000 && shp__owner_alive(w); i++)
		sleep_ms(1);
	cr_expect_not(shp__owner_alive(w), "a zombie counts as alive");
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_expect_not(shp__owner_alive(w), "a reaped child counts as alive");
	close(fds[0]);
	close(fds[1]);
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
