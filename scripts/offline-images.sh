#!/usr/bin/env bash
# Build stand-ins for the stack's official images on a machine that has a
# Docker engine but no container registry, and write .env.images so that
# compose uses them.
#
# What it needs: root (for debootstrap, only when a base image is missing),
# Debian's package mirror, and Go with its module proxy (only when a Go
# binary is missing). Everything it makes is kept and reused:
#   base images     infra-lib-standin/base:{bookworm,trixie}, from debootstrap
#   Go binaries     $INFRA_LIB_CACHE/go/<name>-<version>/ (MinIO, mc, LiveKit,
#                   VictoriaMetrics, vmalert)
#   stand-ins       infra-lib-standin/<name>:<pinned version>-r<STANDIN_REV>,
#                   from scripts/standins/<name>/Dockerfile
# A second run with everything present only checks and rewrites .env.images.
#
# Use the result with:
#   set -a; . ./.env.images; set +a
#   docker compose --env-file .env -f compose/compose.yaml up -d --wait
set -euo pipefail

usage() {
	cat <<EOF
Usage: scripts/offline-images.sh [--rebuild] [--verbose] [--help]

Build the stand-in images for PostgreSQL, Redis, MinIO (and mc), LiveKit,
coturn, the observability layer (VictoriaMetrics, vmalert, the PostgreSQL
and Redis exporters) and the gateway (nginx) from Debian packages and pinned Go sources, then write .env.images at
the repository root with POSTGRES_IMAGE=..., REDIS_IMAGE=... and so on.

Each step is skipped when its result exists: a base image or stand-in tag
(docker image inspect), a Go binary in the cache. Pinned versions and the
Dockerfiles' revision (STANDIN_REV) are part of the tags, so changing either
builds new images.

Options:
  --rebuild   build the stand-in images again, without Docker's layer cache
              (fresh Debian packages), even if their tags exist; base
              images and Go binaries are kept: delete them to redo those
  --verbose   stream build output instead of writing it to log files
  -h, --help  show this help

Environment:
  INFRA_LIB_CACHE  cache directory (default: \$HOME/.cache/infra-lib); build
                   logs go to its logs/ folder
  DEBIAN_MIRROR    mirror for debootstrap (default: http://deb.debian.org/debian)
EOF
}

# Bump when anything under scripts/standins/ changes: it is part of every
# stand-in tag, so the next run builds the new images.
readonly STANDIN_REV=1

# Pinned versions. The Go module versions are the ones the module proxy and
# the checksum database know for these releases.
readonly POSTGRES_MAJOR=17
readonly REDIS_SERIES=7.0
readonly COTURN_SERIES=4.6
readonly MINIO_RELEASE=RELEASE.2025-09-07T16-13-09Z
readonly MINIO_MODULE=github.com/minio/minio
readonly MINIO_MODULE_VERSION=v0.0.0-20250907161309-07c3a429bfed
readonly MC_MODULE=github.com/minio/mc
readonly MC_MODULE_VERSION=v0.0.0-20250313080218-cf909e1063a9
readonly LIVEKIT_MODULE=github.com/livekit/livekit-server/cmd/server
readonly LIVEKIT_VERSION=v1.8.4
# Observability layer (compose/observability.yaml, profile `observability`).
readonly VM_MODULE=github.com/VictoriaMetrics/VictoriaMetrics
readonly VM_VERSION=v1.151.0
readonly POSTGRES_EXPORTER_VERSION=0.11.1
readonly REDIS_EXPORTER_VERSION=1.45
# Gateway (compose/gateway.yaml, profile `gateway`): Debian's nginx.
readonly NGINX_SERIES=1.22

readonly BASE_REPO=infra-lib-standin/base
readonly STANDIN_REPO=infra-lib-standin

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly STANDINS_DIR="$REPO_ROOT/scripts/standins"
readonly ENV_FILE="$REPO_ROOT/.env.images"
readonly CACHE_DIR="${INFRA_LIB_CACHE:-$HOME/.cache/infra-lib}"
readonly GO_CACHE="$CACHE_DIR/go"
readonly LOG_DIR="$CACHE_DIR/logs"
readonly DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# Stand-in images, in build order: name -> tag, Debian suite, Go programs to
# copy into the build context, and the .env.images variables that point at it.
readonly IMAGES=(postgres redis coturn minio mc livekit-server
	victoria-metrics vmalert postgres-exporter redis-exporter nginx)
declare -Ar TAG=(
	[postgres]="$STANDIN_REPO/postgres:$POSTGRES_MAJOR-trixie-r$STANDIN_REV"
	[redis]="$STANDIN_REPO/redis:$REDIS_SERIES-bookworm-r$STANDIN_REV"
	[coturn]="$STANDIN_REPO/coturn:$COTURN_SERIES-bookworm-r$STANDIN_REV"
	[minio]="$STANDIN_REPO/minio:$MINIO_RELEASE-r$STANDIN_REV"
	[mc]="$STANDIN_REPO/mc:$MC_MODULE_VERSION-r$STANDIN_REV"
	[livekit-server]="$STANDIN_REPO/livekit-server:$LIVEKIT_VERSION-r$STANDIN_REV"
	[victoria-metrics]="$STANDIN_REPO/victoria-metrics:$VM_VERSION-r$STANDIN_REV"
	[vmalert]="$STANDIN_REPO/vmalert:$VM_VERSION-r$STANDIN_REV"
	[postgres-exporter]="$STANDIN_REPO/postgres-exporter:$POSTGRES_EXPORTER_VERSION-bookworm-r$STANDIN_REV"
	[redis-exporter]="$STANDIN_REPO/redis-exporter:$REDIS_EXPORTER_VERSION-bookworm-r$STANDIN_REV"
	[nginx]="$STANDIN_REPO/nginx:$NGINX_SERIES-bookworm-r$STANDIN_REV"
)
declare -Ar SUITE=(
	[postgres]=trixie [redis]=bookworm [coturn]=bookworm
	[minio]=bookworm [mc]=bookworm [livekit-server]=bookworm
	[victoria-metrics]=bookworm [vmalert]=bookworm
	[postgres-exporter]=bookworm [redis-exporter]=bookworm
	[nginx]=bookworm
)
declare -Ar GO_INPUTS=([minio]="minio mc" [mc]="mc" [livekit-server]="livekit-server"
	[victoria-metrics]="victoria-metrics" [vmalert]="vmalert")
declare -Ar ENV_VAR=(
	[postgres]=POSTGRES_IMAGE [redis]=REDIS_IMAGE [coturn]=COTURN_IMAGE
	[minio]=MINIO_IMAGE [mc]=MC_IMAGE [livekit-server]=LIVEKIT_IMAGE
	[victoria-metrics]=VICTORIAMETRICS_IMAGE [vmalert]=VMALERT_IMAGE
	[postgres-exporter]=POSTGRES_EXPORTER_IMAGE [redis-exporter]=REDIS_EXPORTER_IMAGE
	[nginx]=GATEWAY_IMAGE
)

# Go programs, in build order: name -> "module version binary-name".
readonly GO_PROGRAMS=(minio mc livekit-server victoria-metrics vmalert)
declare -Ar GO_PROGRAM=(
	[minio]="$MINIO_MODULE $MINIO_MODULE_VERSION minio"
	[mc]="$MC_MODULE $MC_MODULE_VERSION mc"
	[livekit-server]="$LIVEKIT_MODULE $LIVEKIT_VERSION server"
	[victoria-metrics]="$VM_MODULE/app/victoria-metrics $VM_VERSION victoria-metrics"
	[vmalert]="$VM_MODULE/app/vmalert $VM_VERSION vmalert"
)

rebuild=false
verbose=false
summary=()
cleanup_paths=()

log() { printf '%s\n' "$*"; }
die() { printf 'offline-images: error: %s\n' "$*" >&2; exit 1; }

cleanup() {
	local path
	for path in "${cleanup_paths[@]}"; do
		# --one-file-system: never descend into a /proc or /sys that an
		# interrupted debootstrap left mounted inside its target.
		rm -rf --one-file-system "$path" 2>/dev/null || :
	done
}
trap cleanup EXIT
# Interrupted: exit (running the cleanup) with the usual status.
trap 'exit 130' INT
trap 'exit 143' TERM

now_us() {
	local t="$EPOCHREALTIME"
	printf '%s' "${t//[!0-9]/}"
}

# seconds_since START_US -> "12.3"
seconds_since() {
	local us=$(($(now_us) - $1))
	printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}

record() {
	summary+=("$(printf '  %8s  %s' "$2" "$1")")
}

# step LABEL COMMAND...: run COMMAND with a header, its time and a summary line.
step() {
	local label="$1"
	shift
	log "==> $label"
	local start
	start="$(now_us)"
	"$@"
	local secs
	secs="$(seconds_since "$start")"
	log "    done in ${secs}s"
	record "$label" "${secs}s"
}

skip() {
	log "==> $1: present, skipped"
	record "$1" "cached"
}

# run_logged LOGNAME COMMAND...: run COMMAND with its output in a log file
# (or on the terminal with --verbose); on failure show the log's tail.
run_logged() {
	local logfile="$LOG_DIR/$1.log"
	shift
	if "$verbose"; then
		"$@"
		return
	fi
	log "    log: $logfile"
	if ! "$@" >"$logfile" 2>&1; then
		tail -n 40 "$logfile" >&2
		die "failed: $* (full log: $logfile)"
	fi
}

image_exists() {
	docker image inspect "$1" >/dev/null 2>&1
}

go_binary() {
	local name="$1"
	local module version bin
	read -r module version bin <<<"${GO_PROGRAM[$name]}"
	printf '%s/%s-%s/%s' "$GO_CACHE" "$name" "$version" "$bin"
}

# Hash of a stand-in's build files, stored as a label to spot a Dockerfile
# edited without a STANDIN_REV bump.
inputs_hash() {
	(cd "$STANDINS_DIR/$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
}

ensure_debootstrap() {
	command -v debootstrap >/dev/null 2>&1 && return
	command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get to install it"
	log "    installing debootstrap"
	run_logged apt-get-debootstrap sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap'
}

build_base() {
	local suite="$1"
	[ "$(id -u)" = 0 ] || die "$BASE_REPO:$suite is missing and debootstrap needs root"
	ensure_debootstrap
	local rootfs
	rootfs="$(mktemp -d "$CACHE_DIR/rootfs-$suite.XXXXXX")"
	cleanup_paths+=("$rootfs")
	run_logged "debootstrap-$suite" debootstrap --variant=minbase "$suite" "$rootfs" "$DEBIAN_MIRROR"
	tar -C "$rootfs" -c . | docker import - "$BASE_REPO:$suite" >/dev/null
	rm -rf --one-file-system "$rootfs"
}

build_go() {
	local name="$1"
	local module version bin
	read -r module version bin <<<"${GO_PROGRAM[$name]}"
	command -v go >/dev/null 2>&1 || die "go is needed to build $module@$version"
	local dir="$GO_CACHE/$name-$version"
	# Build next to the final place and move the binary in, so that an
	# interrupted build never leaves a binary that later runs would trust.
	local tmp
	mkdir -p "$GO_CACHE"
	tmp="$(mktemp -d "$dir.partial.XXXXXX")"
	cleanup_paths+=("$tmp")
	run_logged "go-$name" env GOBIN="$tmp" CGO_ENABLED=0 GOTOOLCHAIN=local \
		go install -trimpath -ldflags="-s -w" "$module@$version"
	mkdir -p "$dir"
	mv "$tmp/$bin" "$dir/$bin"
	rm -rf "$tmp"
}

build_image() {
	local name="$1"
	local ctx
	ctx="$(mktemp -d "${TMPDIR:-/tmp}/standin-$name.XXXXXX")"
	cleanup_paths+=("$ctx")
	cp -a "$STANDINS_DIR/$name/." "$ctx/"
	local prog src
	for prog in ${GO_INPUTS[$name]:-}; do
		src="$(go_binary "$prog")"
		# A hard link when the cache is on the same file system, else a copy.
		ln "$src" "$ctx/$prog" 2>/dev/null || cp "$src" "$ctx/$prog"
	done
	local -a cache_flags=()
	if "$rebuild"; then
		cache_flags=(--no-cache)
	fi
	local old_id
	old_id="$(docker image inspect --format '{{.Id}}' "${TAG[$name]}" 2>/dev/null || :)"
	run_logged "build-$name" docker build "${cache_flags[@]}" --force-rm \
		--build-arg "BASE_IMAGE=$BASE_REPO:${SUITE[$name]}" \
		--label "org.infra-lib.standin.rev=$STANDIN_REV" \
		--label "org.infra-lib.standin.inputs-sha256=$(inputs_hash "$name")" \
		--tag "${TAG[$name]}" \
		"$ctx"
	rm -rf "$ctx"
	# The image a rebuild replaced, now without a tag; Docker refuses (and
	# this leaves) one that a container still uses.
	if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "${TAG[$name]}")" ]; then
		docker image rm "$old_id" >/dev/null 2>&1 || :
	fi
}

write_env_file() {
	local tmp="$ENV_FILE.tmp.$$"
	cleanup_paths+=("$tmp")
	{
		printf '# Stand-in images built by scripts/offline-images.sh; no secrets.\n'
		printf '# Load before compose: set -a; . ./.env.images; set +a\n'
		local name
		for name in "${IMAGES[@]}"; do
			printf '%s=%s\n' "${ENV_VAR[$name]}" "${TAG[$name]}"
		done
	} >"$tmp"
	chmod 0644 "$tmp"
	mv "$tmp" "$ENV_FILE"
	if git -C "$REPO_ROOT" rev-parse --git-dir >/dev/null 2>&1 &&
		! git -C "$REPO_ROOT" check-ignore -q "$ENV_FILE"; then
		log "    warning: .env.images is not git-ignored; add it to .gitignore" >&2
	fi
}

main() {
	while [ "$#" -gt 0 ]; do
		case "$1" in
			--rebuild) rebuild=true ;;
			--verbose) verbose=true ;;
			-h | --help) usage; exit 0 ;;
			*) die "unknown argument: $1 (see --help)" ;;
		esac
		shift
	done

	[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or newer is needed"
	command -v docker >/dev/null 2>&1 || die "docker is not installed"
	docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is dockerd running, and may this user use it?)"
	mkdir -p "$CACHE_DIR" "$LOG_DIR"

	# One run at a time: two would debootstrap and build the same things.
	exec 9>"$CACHE_DIR/offline-images.lock"
	if ! flock -n 9; then
		log "==> waiting for another offline-images.sh run to finish"
		flock 9
	fi

	local total_start
	total_start="$(now_us)"

	# The images to build decide which base images and Go binaries are
	# needed: a warm run touches neither debootstrap nor Go.
	local name prog suite
	local -A building=() need_suite=() need_go=()
	for name in "${IMAGES[@]}"; do
		if ! "$rebuild" && image_exists "${TAG[$name]}"; then
			local built_hash
			built_hash="$(docker image inspect --format '{{index .Config.Labels "org.infra-lib.standin.inputs-sha256"}}' "${TAG[$name]}")"
			if [ "$built_hash" != "$(inputs_hash "$name")" ]; then
				log "warning: scripts/standins/$name changed since ${TAG[$name]} was built; bump STANDIN_REV in scripts/offline-images.sh (or pass --rebuild)" >&2
			fi
			continue
		fi
		building[$name]=1
		need_suite[${SUITE[$name]}]=1
		for prog in ${GO_INPUTS[$name]:-}; do
			need_go[$prog]=1
		done
	done

	for suite in bookworm trixie; do
		[ -n "${need_suite[$suite]:-}" ] || continue
		if image_exists "$BASE_REPO:$suite"; then
			skip "base image $BASE_REPO:$suite"
		else
			step "base image $BASE_REPO:$suite (debootstrap)" build_base "$suite"
		fi
	done

	for prog in "${GO_PROGRAMS[@]}"; do
		[ -n "${need_go[$prog]:-}" ] || continue
		if [ -x "$(go_binary "$prog")" ]; then
			skip "go binary $(go_binary "$prog")"
		else
			local module version
			read -r module version _ <<<"${GO_PROGRAM[$prog]}"
			step "go install $module@$version" build_go "$prog"
		fi
	done

	for name in "${IMAGES[@]}"; do
		if [ -n "${building[$name]:-}" ]; then
			step "docker build ${TAG[$name]}" build_image "$name"
		else
			skip "image ${TAG[$name]}"
		fi
	done

	step "write .env.images" write_env_file

	log ""
	log "Summary:"
	printf '%s\n' "${summary[@]}"
	log "Total: $(seconds_since "$total_start")s"
	log ""
	log "Images for compose, in $ENV_FILE:"
	grep -v '^#' "$ENV_FILE" | sed 's/^/  /'
}

main "$@"
