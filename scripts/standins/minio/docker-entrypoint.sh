#!/bin/sh
# Entrypoint of the MinIO stand-in image, as in the official one: a command
# that does not start with `minio` is minio's arguments (`server /data`).
set -e

if [ "${1:-}" != 'minio' ] && [ -n "${1:-}" ]; then
	set -- minio "$@"
fi

exec "$@"
