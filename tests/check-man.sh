#!/bin/sh
# The manual pages against the export list and the header:
# - every symbol of lib/libshmpool.map has docs/man/NAME.3 (a page, or a
#   ".so man3/OTHER.3" link to one), installed through Makefile.am, whose
#   NAME and SYNOPSIS name it;
# - each page has NAME, SYNOPSIS (with #include <shmpool.h> and the link
#   flags), DESCRIPTION, RETURN VALUE and SEE ALSO, and names every error code
#   (SHP_E*, E*) that the comment above the function's prototype in
#   include/*.h names, so that a header and its page cannot drift apart;
# - each page renders without a warning (groff -ww, or mandoc -Tlint).
# The symbols come from the map, so a function exported later without a
# page fails here.
set -u
srcdir=${srcdir:-.}
man=$srcdir/docs/man
status=0

fail() {
	echo "FAIL: $*"
	status=1
}

symbols=$(sh "$srcdir/tests/map-symbols.sh" "$srcdir/lib/libshmpool.map")
[ -n "$symbols" ] || { echo "FAIL: no symbol in lib/libshmpool.map"; exit 1; }

# The comment block right above the prototype of $1, in any public header.
header_comment() {
	for h in $(find "$srcdir/include" -name '*.h' | sort); do
		awk -v want="$1" '
			/^\/\*/ { inc = 1; buf = "" }
			inc { buf = buf " " $0 }
			inc && /\*\// { inc = 0; last = buf; next }
			!inc && /^SHP_EXPORT/ && $0 ~ "[ *]" want "\\(" { print last; found = 1; exit }
			END { exit !found }
		' "$h" && return 0
	done
	return 1
}

# The page's source with .so links followed, escaped minus signs plain.
page_text() {
	p=$man/$1.3
	target=$(sed -n 's/^\.so man3\/\(.*\)$/\1/p' "$p")
	[ -n "$target" ] && p=$man/$target
	sed 's/\\-/-/g' "$p"
}

for sym in $symbols; do
	page=$man/$sym.3
	if [ ! -f "$page" ]; then
		fail "$sym: no docs/man/$sym.3"
		continue
	fi
	target=$(sed -n 's/^\.so man3\/\(.*\)$/\1/p' "$page")
	if [ -n "$target" ] && [ ! -f "$man/$target" ]; then
		fail "$sym: docs/man/$sym.3 links to a missing man3/$target"
		continue
	fi
	text=$(page_text "$sym")
	printf '%s\n' "$text" | grep -q '^\.SH RETURN VALUE' ||
		fail "$sym.3: no RETURN VALUE section"
	printf '%s\n' "$text" | sed -n '/^\.SH NAME/,/^\.SH/p' | grep -qw "$sym" ||
		fail "$sym.3: NAME does not name $sym"
	printf '%s\n' "$text" | sed -n '/^\.SH SYNOPSIS/,/^\.SH/p' | grep -q "$sym(" ||
		fail "$sym.3: SYNOPSIS has no prototype of $sym"
	if ! comment=$(header_comment "$sym"); then
		fail "$sym: no SHP_EXPORT prototype in include/"
		continue
	fi
	codes=$(printf '%s\n' "$comment" |
		grep -o -w -e 'SHP_E[A-Z]\{1,\}' -e 'E[A-Z0-9]\{3,\}' | sort -u)
	for code in $codes; do
		printf '%s\n' "$text" | grep -q -w -- "$code" ||
			fail "$sym.3: does not name $code (the header comment does)"
	done
done

# Every page is installed, and has the sections of the house layout.
for page in "$man"/*.3; do
	name=$(basename "$page")
	grep -q "docs/man/$name" "$srcdir/Makefile.am" ||
		fail "$name: not in dist_man3_MANS of Makefile.am"
	grep -q '^\.so ' "$page" && continue
	for section in NAME SYNOPSIS DESCRIPTION 'RETURN VALUE' 'SEE ALSO'; do
		grep -q "^\.SH $section\$" "$page" || fail "$name: no $section section"
	done
	sed -n '/^\.SH SYNOPSIS/,/^\.SH DESCRIPTION/p' "$page" | grep -q '#include <shmpool.h>' ||
		fail "$name: SYNOPSIS does not #include <shmpool.h>"
	sed -n '/^\.SH SYNOPSIS/,/^\.SH DESCRIPTION/p' "$page" | grep -q 'lshmpool' ||
		fail "$name: SYNOPSIS does not say to link with -lshmpool"
done

# Every page renders cleanly (.so links are checked above).
if command -v groff >/dev/null 2>&1; then
	render() { groff -man -ww -z "$1" 2>&1; }
elif command -v mandoc >/dev/null 2>&1; then
	render() { mandoc -Tlint -W warning "$1" 2>&1; }
else
	echo "SKIP: rendering (neither groff nor mandoc is installed)"
	render() { :; }
fi
for page in "$man"/*.3; do
	grep -q '^\.so ' "$page" && continue
	out=$(render "$page")
	[ -z "$out" ] || fail "$(basename "$page") renders with warnings: $out"
done

[ $status = 0 ] && echo "PASS: $(echo $symbols | wc -w) symbols, $(ls "$man"/*.3 | wc -l) pages"
exit $status
