#!/usr/bin/env bash
# Prepares a Debian machine for gpumesh (run as root, e.g. by .ci/run on a fresh clone):
#   - installs the Debian packages gpumesh needs, only those that are missing
#     (wireguard-go wireguard-tools iproute2 chromium, plus $GPUMESH_EXTRA_APT_PACKAGES, space separated)
#   - makes sure PostgreSQL accepts connections on 127.0.0.1:5432
#   - prints the versions found
# Idempotent: when everything is already in place it only checks and prints versions.
set -euo pipefail

log() { echo "gpumesh setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PG_HOST=127.0.0.1
PG_PORT=5432
PG_WAIT_SECONDS=30

# --- Debian packages -------------------------------------------------------------------------
# chromium: the browser tests of the web console drive Debian's build with playwright-core (a browser download fails here)
packages=(wireguard-go wireguard-tools iproute2 chromium)
if [ -n "${GPUMESH_EXTRA_APT_PACKAGES:-}" ]; then
  # shellcheck disable=SC2206 # word splitting is intended: a space separated list
  packages+=(${GPUMESH_EXTRA_APT_PACKAGES})
fi

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for p in "${packages[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "Debian packages already installed: ${packages[*]}"
else
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}) and not running as root"
  log "installing Debian packages: ${missing[*]}"
  apt_start=$SECONDS
  apt-get update -qq >&2 || die "apt-get update failed"
  # --no-install-recommends: otherwise wireguard-tools pulls in a kernel image (via wireguard-modules)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
  for p in "${missing[@]}"; do
    is_installed "$p" || die "package $p is still not installed after apt-get install"
  done
  log "Debian packages installed in $((SECONDS - apt_start)) s"
fi

# --- PostgreSQL ------------------------------------------------------------------------------
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }

command -v pg_isready >/dev/null 2>&1 || die "pg_isready not found (is PostgreSQL installed?)"
if pg_ready; then
  log "PostgreSQL is accepting connections on $PG_HOST:$PG_PORT"
else
  command -v pg_ctlcluster >/dev/null 2>&1 || die "PostgreSQL is not running on $PG_HOST:$PG_PORT and pg_ctlcluster is missing"
  pg_version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$pg_version" ] || die "no PostgreSQL cluster found under /etc/postgresql"
  log "starting PostgreSQL $pg_version cluster 'main'"
  # "already running" is not an error for us: we wait for readiness below either way.
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start >&2 || log "pg_ctlcluster start returned non-zero; waiting for readiness anyway"
  waited=0
  until pg_ready; do
    if [ "$waited" -ge "$PG_WAIT_SECONDS" ]; then
      die "PostgreSQL did not accept connections on $PG_HOST:$PG_PORT within ${PG_WAIT_SECONDS} s"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "PostgreSQL is accepting connections on $PG_HOST:$PG_PORT (after ${waited} s)"
fi

# --- Versions --------------------------------------------------------------------------------
version_of() {
  # $1: label; rest: command. Never fails the script; prints the first line of output.
  local label="$1"; shift
  local out
  out="$("$@" 2>&1 | head -n 1)" || true
  log "  $label: ${out:-unknown}"
}
log "versions found:"
version_of wireguard-go wireguard-go --version
version_of wg wg --version
version_of ip ip -V
version_of psql psql --version
log "system setup done"
