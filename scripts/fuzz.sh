#!/usr/bin/env bash
# Fuzzes the routes file parser, path normalization, the request-head
# check, the fast path's response-head framing and the chunked body decoder
# with cargo-fuzz (libFuzzer): each target in fuzz/ runs for a fixed time,
# one after the other.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
#   SECONDS        time per target; default $FUZZ_SECONDS, else 300
#   TARGET         parse_compile, normalize, request_head, response_head,
#                  chunked; default: all
#
#   e.g. scripts/fuzz.sh 60; FUZZ_SECONDS=900 scripts/fuzz.sh normalize
#
# Environment:
#   FUZZ_SECONDS   time per target when SECONDS is not given (default 300)
#   FUZZ_NICE      niceness of the build and the fuzzers (default 15), so a
#                  benchmark on the same machine is not disturbed
#   FUZZ_SANITIZER address (default) or none (faster; the routes crate
#                  has no unsafe code, but its dependencies do)
#   FUZZ_UPDATE_CORPUS=1
#                  afterwards, add what the run found to the committed
#                  corpus fuzz/corpus/TARGET and minimize it (cargo fuzz
#                  cmin, edge coverage only, so it stays small)
#
# New inputs go to fuzz/target/corpus/TARGET (not committed), which is kept
# between runs; the committed seeds in fuzz/corpus/TARGET are only read.
#
# cargo-fuzz passes -Z flags to rustc. This machine has a stable toolchain
# only, so the script sets RUSTC_BOOTSTRAP=1, which lets stable rustc
# accept them (a nightly toolchain works as well).
#
# Exit status: 0 when every target ran its time without a failure; 1 when
# any target crashed, panicked, timed out or ran out of memory. The failing
# input's path is printed (fuzz/artifacts/TARGET/crash-…), with the
# commands to reproduce and minimize it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-300}"
case "${1:-}" in
  '' | *[!0-9]*) ;; # no SECONDS: every argument is a target
  *)
    seconds="$1"
    shift
    ;;
esac
case "$seconds" in
  '' | *[!0-9]*)
    echo "fuzz.sh: FUZZ_SECONDS must be a whole number, got '$seconds'" >&2
    exit 2
    ;;
esac
nice_level="${FUZZ_NICE:-15}"
sanitizer="${FUZZ_SANITIZER:-address}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(parse_compile normalize request_head response_head chunked)
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

# Release build with debug assertions and overflow checks: an overflow is
# a finding even though the shipped binary would wrap instead of panic.
build_flags=(--release --debug-assertions --sanitizer "$sanitizer")

for target in "${targets[@]}"; do
  echo "fuzz.sh: building $target"
  nice -n "$nice_level" cargo fuzz build "${build_flags[@]}" "$target"
done

# Adds the inputs of WORK to the committed corpus SEEDS and minimizes it on
# edge coverage alone (-use_counters=0 -set_cover_merge=1), which keeps
# it to a few hundred small files. Hand-written seeds (any file not named
# by its SHA-1, as libFuzzer names what it finds) are kept as they are.
update_corpus() {
  local target="$1" work="$2" seeds="$3" named file sum before
  before=$(find "$seeds" -type f | wc -l)
  named=$(mktemp -d)
  find "$seeds" -maxdepth 1 -type f ! -regex '.*/[0-9a-f]\{40\}' -exec cp {} "$named"/ \;
  find "$work" -maxdepth 1 -type f -exec cp -n {} "$seeds"/ \;
  nice -n "$nice_level" cargo fuzz cmin "${build_flags[@]}" "$target" "$seeds" -- \
    -use_counters=0 -set_cover_merge=1
  # cmin renames every file to its SHA-1: put the named seeds back instead.
  for file in "$named"/*; do
    [ -f "$file" ] || continue
    sum=$(sha1sum "$file" | cut -d' ' -f1)
    rm -f "$seeds/$sum"
    cp "$file" "$seeds"/
  done
  rm -r "$named"
  echo "fuzz.sh: $target: committed corpus $before -> $(find "$seeds" -type f | wc -l)" \
    "files, $(du -s --apparent-size --block-size=1K "$seeds" | cut -f1) KiB"
}

failed=()
for target in "${targets[@]}"; do
  work="target/corpus/$target"
  seeds="corpus/$target"
  mkdir -p "$work" "$seeds" "artifacts/$target"
  libfuzzer_flags=(
    "-max_total_time=$seconds"
    -timeout=10
    -print_final_stats=1
  )
  if [ -f "dict/$target.dict" ]; then
    libfuzzer_flags+=("-dict=dict/$target.dict")
  fi
  echo "fuzz.sh: $target for ${seconds}s (corpus $work, seeds $seeds)"
  started=$(date +%s)
  if nice -n "$nice_level" cargo fuzz run "${build_flags[@]}" "$target" \
    "$work" "$seeds" -- "${libfuzzer_flags[@]}"; then
    echo "fuzz.sh: $target: no failure in $(($(date +%s) - started))s;" \
      "corpus $(find "$work" -type f | wc -l) files"
  else
    failed+=("$target")
    echo "fuzz.sh: $target FAILED after $(($(date +%s) - started))s" >&2
    find "artifacts/$target" -type f -newermt "@$started" -print |
      while read -r artifact; do
        echo "  failing input: fuzz/$artifact" >&2
        echo "  reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} $target fuzz/$artifact" >&2
        echo "  minimize:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin ${build_flags[*]} $target fuzz/$artifact" >&2
      done
    continue
  fi
  if [ "${FUZZ_UPDATE_CORPUS:-0}" = 1 ]; then
    update_corpus "$target" "$work" "$seeds"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: all targets ran ${seconds}s without a failure"
