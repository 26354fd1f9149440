#!/bin/sh
# The shared library exports exactly the functions of lib/libshmpool.map:
# none missing, and nothing else (no shp__ internals, no liburcu symbols),
# apart from the map's own version nodes.
set -u
srcdir=${srcdir:-.}
lib=lib/.libs/libshmpool.so
map=$srcdir/lib/libshmpool.map

if [ ! -f "$lib" ]; then
	echo "SKIP: $lib not built (--disable-shared?)"
	exit 77
fi
command -v nm >/dev/null 2>&1 || { echo "SKIP: no nm"; exit 77; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# The map's global symbols, and the names of its version nodes.
sh "$srcdir/tests/map-symbols.sh" "$map" | sort -u >"$tmp/want"
sed -n 's/^[ \t]*\([A-Za-z_][A-Za-z0-9_.]*\)[ \t]*{.*/\1/p' "$map" |
	sort -u >"$tmp/nodes"

# Defined dynamic symbols, without their @@VERSION suffix: the functions
# (T), and anything else (data, absolute version-node symbols) apart.
nm -D --defined-only "$lib" >"$tmp/nm" || exit 1
awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" | sort -u >"$tmp/funcs"
awk '$2 != "T" { sub(/@.*/, "", $3); print $2, $3 }' "$tmp/nm" | sort -u >"$tmp/other"

status=0
missing=$(comm -23 "$tmp/want" "$tmp/funcs")
extra=$(comm -13 "$tmp/want" "$tmp/funcs")
if [ -n "$missing" ]; then
	echo "FAIL: in libshmpool.map but not exported:" $missing
	status=1
fi
if [ -n "$extra" ]; then
	echo "FAIL: exported but not in libshmpool.map:" $extra
	status=1
fi
# The only other symbols allowed are the map's version nodes (type A).
while read -r type name; do
	if [ "$type" = A ] && grep -qx "$name" "$tmp/nodes"; then
		continue
	fi
	echo "FAIL: exported symbol $name (type $type) is not a function of libshmpool.map"
	status=1
done <"$tmp/other"

[ $status = 0 ] && echo "PASS: $lib exports the $(wc -l <"$tmp/want") functions of libshmpool.map, nothing else"
exit $status
