#!/bin/sh
# Builds shmpool from a fresh checkout and runs one of its jobs. Installs the
# Debian packages it needs first (as root, or through sudo). Safe to re-run.
#
#   ./build.sh bench    build, then run the benchmark comparison
#   ./build.sh check    build, then run the whole test suite: plain, again
#                       under ASan + UBSan, again with the fault-injection
#                       kill points (which adds their test), and the unit
#                       tests under valgrind; then the static analysis
#                       (make lint) and 20 s of each fuzz harness
#   ./build.sh stress   build, then run the long multi-process torture
set -eu

job=${1:-check}
case "$job" in
bench|check|stress) ;;
*) echo "usage: $0 bench|check|stress" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "$0")" && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

# groff-base: tests/check-man.sh renders every manual page with it (it only
# checks the pages' contents when neither groff nor mandoc is there).
packages="gcc make autoconf automake libtool pkg-config liburcu-dev libcriterion-dev valgrind groff-base"
# make lint's analyzers, and clang with libFuzzer (its runtime is only a
# recommendation of clang's, which --no-install-recommends skips).
[ "$job" = check ] && packages="$packages cppcheck clang-tidy clang libclang-rt-14-dev"
# The benchmark's peers: DPDK's and Concurrency Kit's rings, Python's Pool,
# and gnuplot for the picture.
[ "$job" = bench ] && packages="$packages libdpdk-dev libck-dev python3 gnuplot-nox"
missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "build.sh: installing:$missing" >&2
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
		--no-install-recommends $missing
	# configure looks for the optional peers: let it look again.
	rm -f "$top/build/Makefile"
fi

cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
	autoreconf -fi
fi

# build DIR [configure options]: configure once, then make.
build() {
	dir=$1
	shift
	mkdir -p "$top/$dir"
	cd "$top/$dir"
	[ -f Makefile ] || ../configure --enable-Werror "$@"
	make -j"$jobs"
}

case "$job" in
bench)
	build build
	make bench
	;;
check)
	build build
	make -j"$jobs" check VERBOSE=1
	build build-sanitize --enable-sanitizers
	ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 \
	LSAN_OPTIONS=suppressions="$top/tests/lsan.supp" \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		make -j"$jobs" check VERBOSE=1
	build build-fault --enable-fault-injection
	make -j"$jobs" check VERBOSE=1
	cd "$top/build"
	make check-valgrind
	make lint
	make fuzz FUZZ_SECONDS=20
	;;
stress)
	build build
	make stress
	;;
esac
