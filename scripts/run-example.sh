#!/usr/bin/env bash
# Starts two throwaway upstreams (python's http.server on 127.0.0.1:3001 and
# :3002) and Switchyard in front of them on config/routes.yaml, listening on
# 127.0.0.1:8080 (admin 127.0.0.1:9901). Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
SWITCHYARD_BOOTSTRAP=build source scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"
cargo build --release
mkdir -p target/example/app1 target/example/app2
echo "hello from app1" > target/example/app1/index.html
echo "hello from app2 (prefix stripped)" > target/example/app2/index.html
python3 -m http.server 3001 --bind 127.0.0.1 --directory target/example >/dev/null 2>&1 &
up1=$!
python3 -m http.server 3002 --bind 127.0.0.1 --directory target/example/app2 >/dev/null 2>&1 &
up2=$!
trap 'kill $up1 $up2 2>/dev/null' EXIT
echo "try: curl http://127.0.0.1:8080/app1/   curl http://127.0.0.1:8080/app2/   curl http://127.0.0.1:9901/ready" >&2
target/release/switchyard serve --config config/routes.yaml --listen 127.0.0.1:8080 "$@"
