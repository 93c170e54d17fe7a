#!/usr/bin/env bash
# Installs what building and testing Switchyard needs beyond Rust itself,
# only when it is missing:
#   cmake       - pingora-core builds zlib-ng with it
#   prometheus  - the tests check the exposition with promtool and scrape
#                 the proxy with a real Prometheus (Debian's package has both)
#   podman, runc - tests/image.rs builds the container image offline
#                 (deploy/build-image.sh) and runs it as the Deployment does;
#                 runc, because crun refuses this kind of machine's hybrid
#                 cgroup mount (docs/image.md)
#   chromium    - tests/browser.rs and tests/vite.rs drive Debian's headless
#                 Chromium over the DevTools protocol (nothing is downloaded
#                 at run time)
#   node, npm   - tests/vite.rs runs a real Vite dev server, installed with
#                 `npm ci` from tests/fixtures/vite/package-lock.json into
#                 target/tmp (the npm registry must be reachable once)
# Set SWITCHYARD_BOOTSTRAP=build to install only what building needs.
# Safe to run again; prints what it installs.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  if [ "$(id -u)" -eq 0 ] && have apt-get; then
    if [ -z "${SWITCHYARD_APT_UPDATED:-}" ]; then
      apt-get update -qq >/dev/null
      export SWITCHYARD_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    return 0
  fi
  if have sudo && have apt-get; then
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    return 0
  fi
  return 1
}

if ! have cmake; then
  echo "bootstrap: installing cmake" >&2
  if ! apt_install cmake; then
    # Without root: PyPI ships cmake as a wheel.
    python3 -m pip install --user --quiet cmake
    export PATH="$HOME/.local/bin:$PATH"
  fi
fi
have cmake || { echo "bootstrap: cmake is still missing; install it and retry" >&2; exit 1; }

if [ "${SWITCHYARD_BOOTSTRAP:-all}" != build ]; then
  if ! have promtool || ! have prometheus; then
    echo "bootstrap: installing prometheus (promtool and server, for the tests)" >&2
    apt_install prometheus || { echo "bootstrap: cannot install prometheus; install promtool and prometheus and retry" >&2; exit 1; }
    # Debian's package may start a service on :9090 where an init system
    # runs; the tests start their own server and need none.
  fi
  if ! have podman || ! have runc; then
    echo "bootstrap: installing podman and runc (for tests/image.rs)" >&2
    apt_install podman runc || { echo "bootstrap: cannot install podman and runc; install them and retry" >&2; exit 1; }
  fi
  if ! have chromium; then
    echo "bootstrap: installing chromium (headless, for tests/browser.rs and tests/vite.rs)" >&2
    apt_install chromium || { echo "bootstrap: cannot install chromium; install it (or set SWITCHYARD_TEST_CHROMIUM) and retry" >&2; exit 1; }
  fi
  # Debian's nodejs (18) is new enough for the Vite the fixture pins; a
  # newer node already on the machine is kept.
  if ! have node; then
    echo "bootstrap: installing nodejs and npm (for tests/vite.rs)" >&2
    apt_install nodejs npm || { echo "bootstrap: cannot install nodejs and npm; install them and retry" >&2; exit 1; }
  elif ! have npm; then
    echo "bootstrap: installing npm (for tests/vite.rs)" >&2
    apt_install npm || { echo "bootstrap: cannot install npm; install it and retry" >&2; exit 1; }
  fi
fi
