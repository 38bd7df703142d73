#!/usr/bin/env bash
# Prepares a Debian machine for gpumesh (run as root, e.g. by .ci/run on a fresh clone):
#   - installs the Debian packages gpumesh needs, only those that are missing: what a network's workers
#     run (wireguard-go wireguard-tools iproute2), plus, for the tests, chromium and
#     $GPUMESH_EXTRA_APT_PACKAGES (space separated)
#   - makes sure PostgreSQL accepts connections on 127.0.0.1:5432 (tests only)
#   - prints the versions found
#   --product   only what `gpumesh up` needs to run a network (what `./gpumesh up` runs itself)
# Idempotent: when everything is already in place it only checks and prints versions. Safe to run again
# after an interrupted run: a dpkg left half-configured is finished first.
set -euo pipefail

log() { echo "gpumesh setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

product_only=0
for arg in "$@"; do
  case "$arg" in
    --product) product_only=1 ;;
    *) die "unknown argument $arg (expected --product)" ;;
  esac
done

PG_HOST=127.0.0.1
PG_PORT=5432
PG_WAIT_SECONDS=30

# --- Debian packages -------------------------------------------------------------------------
# chromium: the browser tests of the web console drive Debian's build with playwright-core (a browser download fails here)
packages=(wireguard-go wireguard-tools iproute2)
[ "$product_only" -eq 1 ] || packages+=(chromium)
if [ "$product_only" -eq 0 ] && [ -n "${GPUMESH_EXTRA_APT_PACKAGES:-}" ]; then
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
  command -v apt-get >/dev/null 2>&1 || die "missing Debian packages (${missing[*]}) and no apt-get on this machine"
  log "installing Debian packages: ${missing[*]}"
  apt_start=$SECONDS
  # An install stopped half-way (Ctrl-C) leaves dpkg waiting to configure; finish that first.
  if [ -n "$(dpkg --audit 2>/dev/null || true)" ]; then
    log "finishing an interrupted package installation (dpkg --configure -a)"
    DEBIAN_FRONTEND=noninteractive dpkg --configure -a >&2 || die "dpkg --configure -a failed"
  fi
  apt-get update -qq >&2 || die "apt-get update failed"
  # --no-install-recommends: otherwise wireguard-tools pulls in a kernel image (via wireguard-modules)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
  for p in "${missing[@]}"; do
    is_installed "$p" || die "package $p is still not installed after apt-get install"
  done
  log "Debian packages installed in $((SECONDS - apt_start)) s"
fi

if [ "$product_only" -eq 1 ]; then
  log "versions found:"
  for tool in wireguard-go wg; do log "  $tool: $("$tool" --version 2>&1 | head -n 1 || true)"; done
  log "system setup done"
  exit 0
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
