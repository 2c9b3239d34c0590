#!/usr/bin/env bash
# Short libFuzzer run of every fuzz target on the STABLE toolchain, without cargo-fuzz.
#
#   fuzz/run.sh [seconds-per-target]      (default 60)
#
# Builds fuzz/ with plain `cargo build --release` and the sanitizer-coverage flags cargo-fuzz
# would pass (all stable `-C` options; no AddressSanitizer: the library crates forbid unsafe
# code), with debug assertions and overflow checks on, then runs each target for the given time
# on a scratch copy of its committed seed corpus (fuzz/seeds/<target>/ is never written).
# Exits non-zero on any crash, panic, timeout or out-of-memory; the failing input is kept under
# the scratch directory and printed (base64) to the log so a CI failure can be reproduced:
#   base64 -d > crash && <target-dir>/<triple>/release/<target> crash
#
# Environment: FUZZ_TARGET_DIR (default: $CARGO_TARGET_DIR/fuzz, or target/fuzz in the repo),
# FUZZ_TARGETS (default: every target below), FUZZ_ARGS (extra libFuzzer flags).
# Needs a C++ compiler (g++) for libFuzzer itself, built by the libfuzzer-sys crate.
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;;
esac

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$fuzz_dir")"
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$repo/target}/fuzz}"
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd)"

# target name and libFuzzer -max_len (bytes) for each target in fuzz/Cargo.toml.
declare -A max_len=([authenticate]=4096 [signed_claims]=2048)
targets="${FUZZ_TARGETS:-authenticate signed_claims}"

# fuzz/ is its own workspace and its Cargo.lock is not committed: start from the main
# workspace's lock so the fuzzers exercise the dependency versions `cargo test` uses.
if [ ! -f "$fuzz_dir/Cargo.lock" ] && [ -f "$repo/Cargo.lock" ]; then
  cp "$repo/Cargo.lock" "$fuzz_dir/Cargo.lock"
fi

# Same coverage instrumentation as `cargo fuzz build` (cargo-fuzz 0.13 defaults, minus the
# sanitizer). `--target` keeps these flags away from build scripts and proc macros.
rustflags=(
  --cfg fuzzing
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-sanitizer-coverage-stack-depth
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  -Ccodegen-units=1
)
triple="$(rustc -vV | sed -n 's/^host: //p')"

echo "fuzz: building ${targets} (release, debug assertions, overflow checks) into $target_dir" >&2
build_start=$SECONDS
RUSTFLAGS="${rustflags[*]} ${RUSTFLAGS:-}" \
CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true \
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --release --manifest-path "$fuzz_dir/Cargo.toml" --target "$triple" \
    --target-dir "$target_dir" $(printf -- '--bin %s ' $targets) \
    --config 'profile.release.package.aws-lc-sys.opt-level=0' \
    --config 'profile.release.package.libfuzzer-sys.opt-level=1'
# The two overrides cut the cold build (C/C++ compiles dominate: 206 s -> 71 s wall measured on
# 2 busy cores) without a measurable change in executions per second: aws-lc's hashing is assembly
# either way and it is not what is fuzzed; libFuzzer's own loop at -O1 keeps up.
echo "fuzz: build took $((SECONDS - build_start)) s" >&2

failed=()
for t in $targets; do
  bin="$target_dir/$triple/release/$t"
  work="$target_dir/run/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "$fuzz_dir/seeds/$t/." "$work/corpus/" -R
  echo "fuzz: $t for ${seconds} s from $(ls "$work/corpus" | wc -l) seeds" >&2
  status=0
  # The scratch corpus comes first: libFuzzer writes the new inputs it finds there.
  # shellcheck disable=SC2086 # FUZZ_ARGS is split on purpose
  "$bin" "$work/corpus" \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len="${max_len[$t]:-4096}" \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} \
    2> "$work/log" || status=$?
  # Progress lines are many; keep the start, the end and the summary in the CI log.
  grep -E '^(INFO: (Loaded|seed corpus|-max_len)|#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$work/log" >&2 || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t FAILED (libFuzzer exit $status); log: $work/log" >&2
    tail -n 60 "$work/log" >&2
    for a in "$work"/artifacts/*; do
      [ -f "$a" ] || continue
      echo "fuzz: failing input $a (base64):" >&2
      base64 -w 0 "$a" >&2
      echo >&2
    done
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all targets ran ${seconds} s without a finding" >&2
