#!/usr/bin/env bash
# The whole test suite: unit tests, end-to-end tests against the real
# binary, and doc tests. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
