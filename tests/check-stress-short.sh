#!/bin/sh
# The short tier of the tortures: maps of random shapes while workers are
# SIGKILLed every ~2 ms, and the public queue while its producers and
# consumers are. make stress runs the long ones.
set -e
tests/stress/stress_map 10 2 2000
tests/stress/stress_queue 5 4 3 16 1000
