#!/bin/sh
# The official image's entrypoint, reduced to its contract: when the command
# is nginx, run the executable /docker-entrypoint.d/* scripts first; then
# exec the command.
set -e
case "$1" in
nginx | nginx-debug)
	for f in /docker-entrypoint.d/*; do
		[ -x "$f" ] || continue
		"$f"
	done
	;;
esac
exec "$@"
