#!/bin/sh
# Runs every example and compares its output with examples/NAME.expected.
set -u
srcdir=${srcdir:-.}
status=0
for exp in "$srcdir"/examples/*.expected; do
	name=$(basename "$exp" .expected)
	if ! out=$(./examples/"$name" 2>&1); then
		echo "FAIL: examples/$name exited non-zero: $out"
		status=1
	elif [ "$out" != "$(cat "$exp")" ]; then
		printf 'FAIL: examples/%s printed:\n%s\nexpected:\n%s\n' "$name" "$out" "$(cat "$exp")"
		status=1
	else
		echo "PASS: examples/$name"
	fi
done
exit $status
