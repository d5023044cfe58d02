#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, where it is missing.
# Idempotent; uses apt-get when running as root (CI and the project's machines are root).
set -euo pipefail

# tmux: the TUI's end-to-end test runs the real binary in a terminal (tests/tui_tmux.rs).
# capnproto: the `capnp` schema compiler, with which schemas/tests/capnp_generated.rs checks the
#   checked-in Rust code generated from schemas/trace.capnp (a build itself does not need it).
packages=(tmux capnproto)

missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing ${missing[*]}; run as root or install them with apt-get" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "install-deps: cargo not found; install Rust with rustup" >&2; exit 1; }
