#!/bin/sh
# Entrypoint of the Redis stand-in image, after the official one:
#   - a command starting with an option or a *.conf file runs redis-server;
#   - `redis-server` started as root fixes ownership of /data and re-runs
#     itself as redis (uid 999);
#   - without a config file that sets protected-mode, the server starts with
#     `--protected-mode no`, as the official image does, since a container's
#     clients never come from loopback.
# compose/redis.yaml replaces this entrypoint and runs as 999:999 directly.
set -e

case "${1:-}" in
	-* | *.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Files written by the server are the server's only, unless a umask is set.
if [ "$(umask)" = '0022' ]; then
	umask 0077
fi

if [ "${1:-}" = 'redis-server' ]; then
	protected_mode=yes
	config_file=
	if [ -f "${2:-}" ]; then
		config_file="$2"
		if grep -q '^protected-mode' "$config_file"; then
			protected_mode=
		fi
	fi
	if [ -n "$protected_mode" ]; then
		shift
		if [ -n "$config_file" ]; then
			shift
			set -- "$config_file" --protected-mode no "$@"
		else
			set -- --protected-mode no "$@"
		fi
		set -- redis-server "$@"
	fi
fi

exec "$@"
