/*
 * The seed's two Process examples, in C:
 *
 *   1. four processes each put a random string on a queue (shp_queue, the
 *      mp.Queue); the parent joins them and takes four strings, in the
 *      order they came;
 *   2. each process writes its string at its own position (shp_collect):
 *      the parent takes them in process order. Python's version tags each
 *      string with its position and sorts; here there is nothing to sort.
 *
 * usage: rand_string [--seed N]
 * Without a seed the strings come from getrandom(). With one, process x of
 * version v draws from rand_r() seeded with N, v and x, and the program
 * checks what the processes sent against the same draws made here: the
 * queue's four strings as a set (their order is the processes' finishing
 * order), the collection's in order, which it prints.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>

#include <shmpool.h>

#define NPROC 4
#define LENGTH 5

static const char chars[] = "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

struct args {
	size_t pos;          /* x: only the collection needs it */
	bool seeded;
	unsigned seed;
	shp_queue *queue;    /* version 1's output */
	shp_collect *slots;  /* version 2's output */
};

/* length random letters and digits into s. */
static int draw(char *s, unsigned length, bool seeded, unsigned seed)
{
	for (unsigned i = 0; i < length;) {
		unsigned char b;

		if (seeded)
			b = (unsigned char)rand_r(&seed);
		else if (getrandom(&b, 1, 0) != 1)
			return -1;
		if (b < 248) /* 4 * 62: no bias */
			s[i++] = chars[b % 62];
	}
	s[length] = '\0';
	return 0;
}

/* rand_string(length, output): runs in the child. */
static int rand_string(void *arg)
{
	const struct args *a = arg;
	char s[16];

	if (draw(s, LENGTH, a->seeded, a->seed))
		return 1;
	if (a->queue) /* output.put(rand_str) */
		return shp_queue_put(a->queue, s, -1) == 0 ? 0 : 1;
	/* output.put((pos, rand_str)), with the position as the place */
	return shp_collect_put(a->slots, a->pos, s) == 0 ? 0 : 1;
}

/* processes = [mp.Process(target=rand_string, ...) for x in range(4)],
 * p.start() and p.join() for each. Returns how many exited with 0; a
 * position whose process did not is failed in the collection, so that
 * its reader does not wait for it. */
static int run(struct args *args)
{
	shp_process *processes[NPROC];
	int ok = 0;

	for (size_t x = 0; x < NPROC; x++) {
		int err = shp_process_start(&processes[x], rand_string, &args[x]);

		if (err) {
			fprintf(stderr, "shp_process_start: %s\n",
			        shp_strerror(err));
			while (x--)
				shp_process_free(processes[x]);
			return -1;
		}
	}
	for (size_t x = 0; x < NPROC; x++) {
		int ws = -1;

		if (shp_process_join(processes[x], -1) == 0 &&
		    shp_process_wait_status(processes[x], &ws) == 0 &&
		    WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
			ok++;
		else if (args[x].slots)
			shp_collect_fail(args[x].slots, x, SHP_ECRASHED);
		shp_process_free(processes[x]);
	}
	return ok;
}

static void print_list(char results[][16], const char *what)
{
	for (size_t x = 0; x < NPROC; x++)
		printf("%s'%s'", x ? ", " : "[", results[x]);
	printf("]  %s\n", what);
}

int main(int argc, char **argv)
{
	struct args args[NPROC];
	char results[NPROC][16], want[NPROC][16];
	bool seeded = argc == 3 && !strcmp(argv[1], "--seed");
	unsigned seed = seeded ? (unsigned)strtoul(argv[2], NULL, 0) : 0;
	shp_queue *queue;
	shp_collect *slots;
	int err, bad = 0;

	if (argc != 1 && !seeded) {
		fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
		return 2;
	}

	/* 1. output = mp.Queue(): room for every process's string, so the
	 * parent may join before it gets, as the seed does. */
	err = shp_queue_create(&queue, sizeof(results[0]), NPROC);
	if (err) {
		fprintf(stderr, "shp_queue_create: %s\n", shp_strerror(err));
		return 1;
	}
	for (size_t x = 0; x < NPROC; x++)
		args[x] = (struct args){ .pos = x, .seeded = seeded,
			                 .seed = seed * 8 + (unsigned)x,
			                 .queue = queue };
	if (run(args) != NPROC)
		bad = 1;
	/* results = [output.get() for p in processes] */
	for (size_t x = 0; x < NPROC; x++)
		if (shp_queue_get(queue, results[x], 0) != 1)
			strcpy(results[x], "?");
	shp_queue_destroy(queue);
	if (!seeded) {
		print_list(results, "(queue: in the order they came)");
	} else {
		/* Each process's string once, in any order. */
		bool taken[NPROC] = { false };

		for (size_t x = 0; x < NPROC; x++) {
			size_t k = 0;

			draw(want[x], LENGTH, true, seed * 8 + (unsigned)x);
			while (k < NPROC &&
			       (taken[k] || strcmp(results[k], want[x]) != 0))
				k++;
			if (k == NPROC)
				bad = 1;
			else
				taken[k] = true;
		}
		printf("queue: %s\n", bad ? "WRONG" : "one string from each process");
	}

	/* 2. The same, each string at its process's position. */
	err = shp_collect_create(&slots, NPROC, sizeof(results[0]));
	if (err) {
		fprintf(stderr, "shp_collect_create: %s\n", shp_strerror(err));
		return 1;
	}
	for (size_t x = 0; x < NPROC; x++)
		args[x] = (struct args){ .pos = x, .seeded = seeded,
			                 .seed = seed * 8 + 4 + (unsigned)x,
			                 .slots = slots };
	if (run(args) != NPROC)
		bad = 1;
	for (size_t x = 0; x < NPROC; x++) {
		size_t pos;

		if (shp_collect_next(slots, &pos, results[x], -1) != 1 ||
		    pos != x) {
			strcpy(results[x], "?");
			bad = 1;
		}
		if (seeded) {
			draw(want[x], LENGTH, true, seed * 8 + 4 + (unsigned)x);
			bad |= strcmp(results[x], want[x]) != 0;
		}
	}
	shp_collect_destroy(slots);
	print_list(results, "(collection: in process order, no sort)");
	return bad;
}
