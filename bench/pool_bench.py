#!/usr/bin/env python3
"""The Python side of shmpool-bench: multiprocessing, measured in-process.

shmpool is compared with Python's Pool, Process and Queue on the same
machine in the same run (bench/tasks.c, bench/scaling.c, bench/queue.c).
The comparison is of the pools and queues, not of interpreter start-up, so
this script creates its Pool once and times only the calls: each mode
prints one line with its own wall time, and a checksum of the results in
order that the C side checks against the value it expects (a fast wrong
answer must not count).

Two ways to drive it:

  pool_bench.py --workers 2 --runs 5 map_cs1:1000 map_auto:50000 busy:100:300
      runs every mode once per round (a warm-up round first, not printed),
      rounds interleaved across modes, and prints one line per mode and run.

  pool_bench.py --workers 2 --serve
      reads one request per line on stdin ("map_cs1 1000", "busy 100 300",
      "quit") and answers each with one line on stdout. shmpool-bench uses
      this, so that its Python rounds interleave with its C rounds.

Modes and output lines (times in seconds):

  map_cs1 N       pool.map(inc, xs, chunksize=1)  -> map_cs1 N SECONDS CHECKSUM
  map_auto N      pool.map(inc, xs)               -> map_auto N SECONDS CHECKSUM
  apply_async N   apply_async per task, then get  -> apply_async N SECONDS CHECKSUM
  busy US N       N busy tasks of US microseconds, serially in this process
                  and then with pool.map (automatic chunks)
                  -> busy US N ITERS SERIAL_SECONDS POOL_SECONDS CK_SERIAL CK_POOL
  queue P M       the Process+Queue pattern: P Process producers each put M
                  (position, inc(xs[position])) tuples on one Queue, the
                  parent gets all P * M; timed from a Barrier that every
                  producer has reached to the last get
                  -> queue P M SECONDS CHECKSUM
  pipeline N W K  pypeln's process stages by hand: map inc (W processes),
                  filter "even" (1), map double (W), joined by Queue(K) with
                  sentinels, results in input order; STREAM from the first
                  item fed (every stage process started) to the last result,
                  TOTAL from making the queues to the last process joined;
                  STRAYS: items for a position already done (must be 0)
                  -> pipeline N W K STREAM_SECONDS TOTAL_SECONDS CHECKSUM STRAYS

The inputs are xs[i] = i * 0x9e3779b97f4a7c15 mod 2**64 (not i itself: a
result at the wrong position would too often look plausible). CHECKSUM is
sum((i + 1) * result[i]) mod 2**64: it changes when results are reordered.
For queue, result[p * M + k] is the k-th item that came from producer p
(so that the checksum is that of inc over xs when each producer's items
arrive in the order it put them); for pipeline, the results that passed
the filter, in input order.
The busy task is the C benchmark's loop, x = x * A + C mod 2**64, ITERS
times: the C side recomputes it to check the results.

Standard library only. Start-up prints "ready <python version> <start
method> <busy loop iterations per microsecond>".
"""

import argparse
import multiprocessing
import platform
import sys
import threading
import time

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
LCG_A = 6364136223846793005
LCG_C = 1442695040888963407


def inc(x):
    return x + 1


def busy(arg):
    x, iters = arg
    for _ in range(iters):
        x = (x * LCG_A + LCG_C) & MASK
    return x


def even(x):
    return x % 2 == 0


def double(x):
    return (2 * x) & MASK


def inputs(n):
    return [(i * GOLDEN) & MASK for i in range(n)]


def checksum(results):
    return sum(i * r for i, r in enumerate(results, 1)) & MASK


def produce(q, gate, p, m):
    """A producer of the Process+Queue pattern."""
    gate.wait()
    for pos in range(p * m, (p + 1) * m):
        q.put((pos, inc((pos * GOLDEN) & MASK)))


def stage_worker(fn, keep, qin, qout, gate):
    """A process of a pipeline stage: (i, x) in, (i, fn(x)) out.

    A filter (keep) passes x or, when it drops the item, None: the reader
    must learn that position i is done to keep input order. None as a
    whole item is the end of the input.
    """
    gate.wait()
    while True:
        item = qin.get()
        if item is None:
            return
        i, x = item
        if x is not None:
            x = (x if fn(x) else None) if keep else fn(x)
        qout.put((i, x))


def stage_closer(procs, q, ends):
    """Ends a stage's output once all its processes have exited.

    Queue.put only hands the item to the process's feeder thread: an end
    marker that a stage process put itself could overtake its siblings'
    items still in their feeders. A process exits only after its feeder
    has flushed, so after the joins every item is in the pipe.
    """
    for pr in procs:
        pr.join()
    for _ in range(ends):
        q.put(None)


def feed(q, xs, ends):
    for item in enumerate(xs):
        q.put(item)
    for _ in range(ends):
        q.put(None)


def calibrate():
    """Busy-loop iterations per microsecond, in this process.

    The best of a few tries: the fastest one is the one that was not
    preempted; a first, longer one gives the core time to reach the clock
    it will run the rounds at. Done once per run of the script, before any
    round, so that every round's tasks have the same length.
    """
    iters = 20000
    busy((1, 5 * iters))
    best = None
    for _ in range(5):
        t0 = time.perf_counter()
        busy((1, iters))
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return iters / (best * 1e6)


class Bench:
    def __init__(self, pool, iters_per_us):
        self.pool = pool
        self.iters_per_us = iters_per_us

    def map_cs1(self, n):
        return self._timed_inc("map_cs1", n, lambda xs: self.pool.map(inc, xs, chunksize=1))

    def map_auto(self, n):
        return self._timed_inc("map_auto", n, lambda xs: self.pool.map(inc, xs))

    def apply_async(self, n):
        def run(xs):
            handles = [self.pool.apply_async(inc, (x,)) for x in xs]
            return [h.get() for h in handles]

        return self._timed_inc("apply_async", n, run)

    def _timed_inc(self, mode, n, run):
        xs = inputs(n)
        t0 = time.perf_counter()
        out = run(xs)
        dt = time.perf_counter() - t0
        return "%s %d %.9f %d" % (mode, n, dt, checksum(out))

    def busy(self, us, n):
        # At least one iteration: a zero-length task would measure nothing.
        iters = max(1, round(us * self.iters_per_us))
        args = [(x, iters) for x in inputs(n)]
        t0 = time.perf_counter()
        ser = [busy(a) for a in args]
        t1 = time.perf_counter()
        par = self.pool.map(busy, args)
        t2 = time.perf_counter()
        return "busy %d %d %d %.9f %.9f %d %d" % (
            us, n, iters, t1 - t0, t2 - t1, checksum(ser), checksum(par))

    def queue(self, p, m):
        q = multiprocessing.Queue()
        gate = multiprocessing.Barrier(p + 1)
        procs = [multiprocessing.Process(target=produce, args=(q, gate, k, m))
                 for k in range(p)]
        for pr in procs:
            pr.start()
        gate.wait()
        t0 = time.perf_counter()
        got = [q.get() for _ in range(p * m)]
        dt = time.perf_counter() - t0
        for pr in procs:
            pr.join()
        # Each producer's items in the order they came: a lost, repeated
        # or reordered one moves the others and changes the checksum.
        per = [[] for _ in range(p)]
        for pos, val in got:
            per[pos // m % p].append(val)
        return "queue %d %d %.9f %d" % (
            p, m, dt, checksum([v for items in per for v in items]))

    def pipeline(self, n, w, maxsize):
        xs = inputs(n)
        stages = [(inc, False, w), (even, True, 1), (double, False, w)]
        t0 = time.perf_counter()
        qs = [multiprocessing.Queue(maxsize) for _ in range(len(stages) + 1)]
        gate = multiprocessing.Barrier(sum(s[2] for s in stages) + 1)
        closers = []
        for k, (fn, keep, nproc) in enumerate(stages):
            procs = [multiprocessing.Process(target=stage_worker,
                                             args=(fn, keep, qs[k], qs[k + 1], gate))
                     for _ in range(nproc)]
            for pr in procs:
                pr.start()
            ends = stages[k + 1][2] if k + 1 < len(stages) else 1
            closers.append(threading.Thread(target=stage_closer,
                                            args=(procs, qs[k + 1], ends)))
        for c in closers:
            c.start()
        gate.wait()
        t1 = time.perf_counter()
        feeder = threading.Thread(target=feed, args=(qs[0], xs, stages[0][2]))
        feeder.start()
        out, pending, nxt, strays, t2 = [], {}, 0, 0, None
        while True:
            item = qs[-1].get()
            if item is None:
                break
            i, x = item
            if i < nxt or i in pending or i >= n:
                strays += 1
                continue
            pending[i] = x
            while nxt in pending:
                x = pending.pop(nxt)
                nxt += 1
                if x is not None:
                    out.append(x)
            if nxt == n:
                t2 = time.perf_counter()
        feeder.join()
        for c in closers:
            c.join()
        t3 = time.perf_counter()
        if t2 is None:
            t2 = t3  # positions missing: the checksum tells
        return "pipeline %d %d %d %.9f %.9f %d %d" % (
            n, w, maxsize, t2 - t1, t3 - t0, checksum(out), strays)

    def request(self, req):
        mode, vals = req
        return getattr(self, mode)(*vals)


MODES = {"map_cs1": 1, "map_auto": 1, "apply_async": 1, "busy": 2,
         "queue": 2, "pipeline": 3}


def parse(words):
    """["map_cs1", "1000"] or ["busy", "100", "300"] -> (mode, numbers)."""
    mode, nums = words[0], words[1:]
    if mode not in MODES:
        raise ValueError("unknown mode %r" % mode)
    if len(nums) != MODES[mode]:
        raise ValueError("%s takes %d numbers" % (mode, MODES[mode]))
    try:
        vals = [int(v) for v in nums]
    except ValueError:
        raise ValueError("%s: not a number in %r" % (mode, nums)) from None
    if any(v < 1 for v in vals):
        raise ValueError("%s: numbers must be >= 1" % mode)
    return mode, vals


def serve(bench):
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            return
        try:
            answer = bench.request(parse(words))
        except ValueError as e:
            answer = "error %s" % e
        print(answer, flush=True)


def batch(bench, reqs, runs):
    for rnd in range(runs + 1):
        for r in reqs:
            line = bench.request(r)
            if rnd:
                print(line, flush=True)


def main():
    ap = argparse.ArgumentParser(
        description="multiprocessing.Pool timings for shmpool-bench")
    ap.add_argument("--workers", type=int, default=multiprocessing.cpu_count(),
                    help="Pool processes (default: CPUs)")
    ap.add_argument("--runs", type=int, default=5,
                    help="timed runs per mode, after one warm-up (batch mode)")
    ap.add_argument("--serve", action="store_true",
                    help="read requests on stdin, one per line")
    ap.add_argument("modes", nargs="*",
                    help="map_cs1:N map_auto:N apply_async:N busy:US:N "
                    "queue:P:M pipeline:N:W:K")
    args = ap.parse_args()
    if args.workers < 1 or args.runs < 1:
        ap.error("--workers and --runs must be >= 1")
    if not args.serve and not args.modes:
        ap.error("give modes, or --serve")
    # Before the Pool exists: a typo fails at once, not after start-up.
    try:
        reqs = [parse(m.split(":")) for m in args.modes]
    except ValueError as e:
        ap.error(str(e))

    iters_per_us = calibrate()
    with multiprocessing.Pool(args.workers) as pool:
        # Every worker started and idle before anything is timed.
        pool.map(inc, range(4 * args.workers), chunksize=1)
        print("ready %s %s %.3f" % (platform.python_version(),
                                    multiprocessing.get_start_method(),
                                    iters_per_us), flush=True)
        bench = Bench(pool, iters_per_us)
        if args.serve:
            serve(bench)
        else:
            batch(bench, reqs, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
