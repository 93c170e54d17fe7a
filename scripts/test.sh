#!/usr/bin/env bash
# The whole test suite: unit tests, end-to-end tests against the real
# binary, and doc tests. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"
# Kubernetes manifests: render, validate against the 1.30 schemas, lint the
# scripts (installs kubectl, shellcheck and kubernetes-validate if missing;
# tests/deploy.rs needs the first two).
bash scripts/check-deploy.sh
# Tests that need the tools installed above are #[ignore]d, so that plain
# `cargo test` passes without them; here they all run.
cargo test --workspace --all-targets "$@" -- --include-ignored
cargo test --workspace --doc

# The shipped alert rules: valid, their unit tests pass, and the plain file
# and the PrometheusRule manifest say the same thing.
promtool check rules deploy/monitoring/switchyard-rules.yaml
promtool test rules deploy/monitoring/switchyard-rules.test.yaml
python3 deploy/monitoring/check-rules-sync.py
