# Sourced by ./gpumesh, .ci/run and scripts: puts Node.js 24 on PATH and installs the npm workspace once.
# The machines we target may ship an older Node (20 is end-of-life); the `node` package on the npm registry
# carries the official Node binary, so we install it into .tools/ instead of asking for a system upgrade.
gpumesh_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gpumesh_node_version="$(cat "$gpumesh_root/.nvmrc")"
gpumesh_node_dir="$gpumesh_root/.tools/node-$gpumesh_node_version"
# What each bootstrap step took, in ms (0: nothing to do), for `gpumesh up` to report: node=…,npm=…,console=…
gpumesh_now_ms() { date +%s%3N; }
gpumesh_step_started="$(gpumesh_now_ms)"
gpumesh_bootstrap_node_ms=0
gpumesh_bootstrap_npm_ms=0
gpumesh_bootstrap_console_ms=0

if ! node --version 2>/dev/null | grep -q '^v24\.'; then
  if [ ! -x "$gpumesh_node_dir/node_modules/node/bin/node" ]; then
    echo "gpumesh: installing Node.js $gpumesh_node_version into .tools/ (the system Node is $(node --version 2>/dev/null || echo missing))" >&2
    mkdir -p "$gpumesh_node_dir"
    npm install --silent --no-save --no-package-lock --prefix "$gpumesh_node_dir" "node@$gpumesh_node_version" >&2 || {
      echo "gpumesh: could not install Node.js $gpumesh_node_version from the npm registry" >&2
      return 1 2>/dev/null || exit 1
    }
  fi
  export PATH="$gpumesh_node_dir/node_modules/node/bin:$PATH"
  gpumesh_bootstrap_node_ms=$(($(gpumesh_now_ms) - gpumesh_step_started))
fi

# Reinstall dependencies when the lockfile changed since the last install.
gpumesh_lock_stamp="$gpumesh_root/node_modules/.gpumesh-lock.sha256"
gpumesh_lock_sum="$(sha256sum "$gpumesh_root/package-lock.json" 2>/dev/null | cut -d' ' -f1)"
if [ ! -f "$gpumesh_lock_stamp" ] || [ "$(cat "$gpumesh_lock_stamp")" != "$gpumesh_lock_sum" ]; then
  gpumesh_step_started="$(gpumesh_now_ms)"
  echo "gpumesh: installing npm dependencies (npm ci)" >&2
  (cd "$gpumesh_root" && npm ci --silent --no-audit --no-fund >&2) || {
    echo "gpumesh: npm ci failed" >&2
    return 1 2>/dev/null || exit 1
  }
  echo "$gpumesh_lock_sum" >"$gpumesh_lock_stamp"
  gpumesh_bootstrap_npm_ms=$(($(gpumesh_now_ms) - gpumesh_step_started))
fi

# The web console the coordinator serves at /: built with Vite when its sources changed since the last build.
gpumesh_console_dir="$gpumesh_root/packages/console"
if [ -f "$gpumesh_console_dir/index.html" ]; then
  gpumesh_console_stamp="$gpumesh_console_dir/dist/.gpumesh-sources.sha256"
  gpumesh_console_sum="$(cd "$gpumesh_root" && find packages/console/src packages/console/index.html packages/console/vite.config.ts \
    packages/protocol/src packages/sdk/src packages/core/src -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$gpumesh_console_stamp" ] || [ "$(cat "$gpumesh_console_stamp")" != "$gpumesh_console_sum" ]; then
    gpumesh_step_started="$(gpumesh_now_ms)"
    echo "gpumesh: building the web console (vite build)" >&2
    (cd "$gpumesh_root" && npm run build --silent -w @gpumesh/console >&2) || {
      echo "gpumesh: the web console did not build" >&2
      return 1 2>/dev/null || exit 1
    }
    echo "$gpumesh_console_sum" >"$gpumesh_console_stamp"
    gpumesh_bootstrap_console_ms=$(($(gpumesh_now_ms) - gpumesh_step_started))
  fi
fi
export GPUMESH_BOOTSTRAP_TIMINGS="node=$gpumesh_bootstrap_node_ms,npm=$gpumesh_bootstrap_npm_ms,console=$gpumesh_bootstrap_console_ms"
