#!/bin/sh
# Runs every example and compares its output with examples/NAME.expected;
# then checks what the output alone does not show.
# examples/NAME.args, when there is one, holds the arguments to run it with.
set -u
srcdir=${srcdir:-.}
status=0

fail() {
	printf 'FAIL: %s\n' "$*"
	status=1
}

# What of an example's output is compared: all of it, but the timings of
# the harness (its numbers with a decimal point, and the blanks that pad
# them) become " #".
filter() {
	case $1 in
	harness) sed 's/ *[0-9][0-9]*\.[0-9][0-9]*/ #/g' ;;
	*) cat ;;
	esac
}

for exp in "$srcdir"/examples/*.expected; do
	name=$(basename "$exp" .expected)
	args=""
	[ -f "$srcdir/examples/$name.args" ] && args=$(cat "$srcdir/examples/$name.args")
	# shellcheck disable=SC2086 # the arguments are words
	if ! out=$(./examples/"$name" $args 2>&1); then
		fail "examples/$name $args exited non-zero: $out"
	elif [ "$(printf '%s\n' "$out" | filter "$name")" != "$(cat "$exp")" ]; then
		printf 'FAIL: examples/%s printed:\n%s\nexpected:\n%s\n' "$name" "$out" "$(cat "$exp")"
		status=1
	else
		echo "PASS: examples/$name $args"
	fi
done

# pgm FILE W H: FILE is a binary PGM of W x H pixels, maxval 255.
pgm() {
	head=$(printf 'P5\n%s %s\n255\n' "$2" "$3")
	if [ "$(head -n 3 "$1" 2>/dev/null)" != "$head" ]; then
		fail "$1: not a P5 PGM header for $2 x $3: $(head -c 20 "$1" | od -c | head -2)"
	elif [ "$(wc -c <"$1")" -ne $((${#head} + 1 + $2 * $3)) ]; then
		fail "$1: $(wc -c <"$1") bytes, not a header and $2 x $3 pixels"
	else
		return 0
	fi
	return 1
}

# mandelbrot: the default run above wrote mandelbrot.pgm; at another size,
# with more iterations, the image the pool computed and the one a serial
# loop computed have the same checksum and the same bytes.
pgm mandelbrot.pgm 320 240 && echo "PASS: examples/mandelbrot wrote a 320 x 240 PGM"
rm -f mandelbrot.pgm
if ! out=$(./examples/mandelbrot --verify mandelbrot-verify.pgm 301 207 1000 2>&1); then
	fail "examples/mandelbrot --verify: $out"
else
	sum=$(printf '%s\n' "$out" | sed -n 's/^fnv1a \([0-9a-f]\{8\}\)$/\1/p')
	serial=$(printf '%s\n' "$out" | sed -n 's/^serial fnv1a \([0-9a-f]\{8\}\): same image$/\1/p')
	if [ -z "$sum" ] || [ "$sum" != "$serial" ]; then
		fail "examples/mandelbrot --verify: the pool's and the serial image differ: $out"
	elif pgm mandelbrot-verify.pgm 301 207; then
		echo "PASS: examples/mandelbrot --verify: pool and serial loop agree ($sum)"
	fi
fi
rm -f mandelbrot-verify.pgm
exit $status
