#!/bin/sh
# Entrypoint of the coturn stand-in image: a command starting with an option
# is turnserver's options, anything else runs as given (the official image's
# rule, without its `$(...)` expansion of the arguments).
set -e

case "${1:-}" in
	-*) set -- turnserver "$@" ;;
esac

exec "$@"
