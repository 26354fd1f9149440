#!/bin/sh
# The short tier of the pool torture: maps of random shapes while workers
# are SIGKILLed every ~2 ms. make stress runs the long one.
exec tests/stress/stress_map 10 2 2000
