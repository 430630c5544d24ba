#!/usr/bin/env bash
# Runs `serin demo` on this machine: installs Prometheus (Debian's package) when it is missing,
# builds Serin in release mode and runs the demo. Arguments go to `serin demo`
# (e.g. --scenario promote, --plain, --keep-running).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PROMETHEUS:-}" ] && ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
  echo "Prometheus is not installed; installing Debian's prometheus package..." >&2
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    # Only the binary is needed: do not start the packaged service.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  else
    echo "No apt-get here: download Prometheus from https://prometheus.io/download/ and set" >&2
    echo "PROMETHEUS=/path/to/prometheus, then run this script again." >&2
    exit 2
  fi
fi

# Build first, with cargo's own progress visible (a progress bar on a terminal, one line per
# crate otherwise): the first release build takes minutes and should not look like a hang.
echo "Building Serin in release mode (the first build takes several minutes)..." >&2
cargo build --release --bin serin
echo "Starting the demo: embedded cluster, controller, gateway, load and Prometheus..." >&2
exec "${CARGO_TARGET_DIR:-target}/release/serin" demo "$@"
