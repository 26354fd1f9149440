#!/bin/sh
# make installcheck: builds tests/installcheck.c against the *installed*
# header and library, with the flags of the installed shmpool.pc, runs it
# on the installed library, and checks that every exported function has an
# installed manual page that man(1) finds. Run from Makefile.am with the
# install directories in the environment (DESTDIR may be empty).
set -u
: "${srcdir:?}" "${libdir:?}" "${pkgconfigdir:?}" "${mandir:?}" "${man3dir:?}"
: "${PACKAGE_VERSION:?}" "${CC:=cc}" "${PKG_CONFIG:=pkg-config}"
DESTDIR=${DESTDIR:-}
status=0

fail() {
	echo "FAIL: $*"
	status=1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmpool-installcheck.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# --- the library, through its installed shmpool.pc
pc() {
	if [ -n "$DESTDIR" ]; then
		PKG_CONFIG_SYSROOT_DIR=$DESTDIR PKG_CONFIG_PATH=$DESTDIR$pkgconfigdir \
			"$PKG_CONFIG" "$@" shmpool
	else
		PKG_CONFIG_PATH=$pkgconfigdir "$PKG_CONFIG" "$@" shmpool
	fi
}
if [ ! -f "$DESTDIR$pkgconfigdir/shmpool.pc" ]; then
	fail "no $DESTDIR$pkgconfigdir/shmpool.pc"
elif [ "$(pc --modversion)" != "$PACKAGE_VERSION" ]; then
	fail "installed shmpool.pc says version $(pc --modversion), not $PACKAGE_VERSION"
elif ! flags=$(pc --cflags --libs); then
	fail "pkg-config --cflags --libs shmpool"
else
	echo "pkg-config --cflags --libs shmpool: $flags"
	# shellcheck disable=SC2086 # the flags are words
	if ! $CC -o "$tmp/installcheck" "$srcdir/tests/installcheck.c" $flags; then
		fail "could not build tests/installcheck.c against the installed library"
	else
		libs=$DESTDIR$libdir
		if command -v ldd >/dev/null 2>&1; then
			found=$(LD_LIBRARY_PATH=$libs ldd "$tmp/installcheck" |
				sed -n 's/.*libshmpool[^ ]* => \([^ ]*\).*/\1/p')
			case $found in
			"$libs"/*) ;;
			*) fail "the program loads libshmpool from '$found', not from $libs" ;;
			esac
		fi
		want=$(printf 'shmpool %s (header %s)\n1 8 27 64 125 216' \
			"$PACKAGE_VERSION" "$PACKAGE_VERSION")
		if ! out=$(LD_LIBRARY_PATH=$libs "$tmp/installcheck" 2>&1); then
			fail "the installcheck program failed: $out"
		elif [ "$out" != "$want" ]; then
			printf 'FAIL: the installcheck program printed:\n%s\nexpected:\n%s\n' "$out" "$want"
			status=1
		else
			echo "PASS: a program built from the installed shmpool.pc runs"
		fi
	fi
fi

# --- the manual pages: one per exported function, and the overview
names="shmpool $(sh "$srcdir/tests/map-symbols.sh" "$srcdir/lib/libshmpool.map")"
have_man=no
command -v man >/dev/null 2>&1 && have_man=yes
for name in $names; do
	page=$DESTDIR$man3dir/$name.3
	if [ ! -f "$page" ]; then
		fail "no installed page $page"
		continue
	fi
	[ $have_man = yes ] || continue
	# man follows .so links itself; --warnings makes groff say what is off.
	if ! out=$(MANWIDTH=80 man --warnings -M "$DESTDIR$mandir" -P cat 3 "$name" 2>"$tmp/err") ||
	   [ -z "$out" ] || [ -s "$tmp/err" ]; then
		fail "man 3 $name: $(cat "$tmp/err")"
	fi
done
[ $have_man = yes ] || echo "SKIP: man(1) is not installed; the pages were only found"
[ $status = 0 ] && echo "PASS: $(echo $names | wc -w) manual pages installed"
exit $status
