#!/bin/sh
# Runs every example and compares its output with examples/NAME.expected.
# examples/NAME.args, when there is one, holds the arguments to run it with.
set -u
srcdir=${srcdir:-.}
status=0
for exp in "$srcdir"/examples/*.expected; do
	name=$(basename "$exp" .expected)
	args=""
	[ -f "$srcdir/examples/$name.args" ] && args=$(cat "$srcdir/examples/$name.args")
	# shellcheck disable=SC2086 # the arguments are words
	if ! out=$(./examples/"$name" $args 2>&1); then
		echo "FAIL: examples/$name $args exited non-zero: $out"
		status=1
	elif [ "$out" != "$(cat "$exp")" ]; then
		printf 'FAIL: examples/%s printed:\n%s\nexpected:\n%s\n' "$name" "$out" "$(cat "$exp")"
		status=1
	else
		echo "PASS: examples/$name $args"
	fi
done
exit $status
