#!/bin/sh
# Prints the global symbols of every version node of a linker version
# script (lib/libshmpool.map), one a line: what the library exports.
exec awk '
	/global:/ { g = 1; sub(/.*global:/, "") }
	/local:/ { g = 0 }
	/}/ { g = 0 }
	g { while (match($0, /[A-Za-z_][A-Za-z0-9_]*[ \t]*;/)) {
		s = substr($0, RSTART, RLENGTH); sub(/[ \t]*;$/, "", s); print s
		$0 = substr($0, RSTART + RLENGTH) } }
' "$1"
