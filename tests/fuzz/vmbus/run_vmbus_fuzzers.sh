#!/usr/bin/env bash
# Builds the VMBus libFuzzer targets with clang-14 (Bazel's toolchain is GCC,
# which has no libFuzzer) and fuzzes each for a bounded time. Modelled on
# tests/fuzz/run_fuzzers.sh, whose target and source lists are the loader's.
#
#   run_vmbus_fuzzers.sh [SECONDS_PER_TARGET] [CORPUS_DIR]
#
# Under `bazel test //tests/fuzz/vmbus:vmbus_fuzz_test`: 15 s per target
# (HVSTACK_FUZZ_SECONDS overrides), fresh corpora from make_vmbus_seeds.
# Under `bazel run //tests/fuzz/vmbus:campaign -- SECONDS [CORPUS_DIR]`:
# corpora persist (default ~/.cache/hvstack/fuzz-corpus).
# A crash, leak, sanitizer report or timeout fails the run and keeps the
# input. Without clang-14 or its fuzzer runtime the run is skipped with a
# message naming the Debian packages.
set -euo pipefail

log() { echo "vmbus-fuzz: $*" >&2; }

skip() {
  log "SKIPPED: $*"
  if [[ -n ${XML_OUTPUT_FILE:-} ]]; then
    local msg=${*//&/&amp;}
    msg=${msg//</&lt;}
    msg=${msg//\"/&quot;}
    cat >"$XML_OUTPUT_FILE" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="vmbus_fuzz_test" tests="1" failures="0" skipped="1">
<testcase name="vmbus_fuzz_test" status="notrun" result="skipped"><skipped message="$msg"/></testcase>
</testsuite></testsuites>
XML
  fi
  exit 0
}

targets=(vmbus_ring vmbus_messages)
lib_sources=(vmwp/vmbus/guest_pages.cc vmwp/vmbus/ring_buffer.cc
  vmwp/vmbus/channel_messages.cc vmwp/vmbus/gpadl.cc vmwp/vmbus/channel.cc
  vmwp/vmbus/server.cc)

if [[ -n ${TEST_SRCDIR:-} ]]; then
  src="$TEST_SRCDIR/hvstack"
elif [[ -n ${RUNFILES_DIR:-} ]]; then
  src="$RUNFILES_DIR/hvstack"
elif [[ -d "$0.runfiles/hvstack" ]]; then
  src="$0.runfiles/hvstack"
else
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
fi
[[ -f $src/vmwp/vmbus/ring_buffer.cc ]] || { log "error: sources not found under $src"; exit 1; }

seconds=${1:-${HVSTACK_FUZZ_SECONDS:-15}}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { log "error: SECONDS must be a positive integer, got '$seconds'"; exit 2; }
if [[ -n ${TEST_TMPDIR:-} ]]; then
  work="$TEST_TMPDIR/vmbus-fuzz"
  corpus_root=${2:-$work/corpus}
else
  work=$(mktemp -d /tmp/hvstack-vmbus-fuzz.XXXXXX)
  corpus_root=${2:-${HVSTACK_FUZZ_CORPUS:-$HOME/.cache/hvstack/fuzz-corpus}}
fi
mkdir -p "$work/obj" "$work/artifacts" "$corpus_root"

cxx=${HVSTACK_FUZZ_CXX:-clang++-14}
if ! command -v "$cxx" >/dev/null; then
  skip "$cxx not found; install Debian's clang-14, libfuzzer-14-dev and libclang-rt-14-dev (deploy/install-deps.sh)"
fi
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$work/probe.cc"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$work/probe.cc" -o "$work/probe" 2>"$work/probe.log"; then
  skip "$cxx cannot link a libFuzzer binary ($(tail -n 1 "$work/probe.log")); install libclang-rt-14-dev and libfuzzer-14-dev"
fi

absl_libs=$(pkg-config --libs absl_statusor absl_str_format absl_strings absl_synchronization absl_flat_hash_map absl_hash 2>/dev/null ||
  echo "-labsl_statusor -labsl_status -labsl_cord -labsl_cordz_info -labsl_cord_internal -labsl_cordz_functions -labsl_exponential_biased -labsl_cordz_handle -labsl_raw_hash_set -labsl_hashtablez_sampler -labsl_hash -labsl_city -labsl_low_level_hash -labsl_synchronization -labsl_graphcycles_internal -labsl_time -labsl_civil_time -labsl_time_zone -labsl_bad_optional_access -labsl_stacktrace -labsl_strerror -labsl_symbolize -labsl_debugging_internal -labsl_demangle_internal -labsl_malloc_internal -labsl_bad_variant_access -labsl_str_format_internal -labsl_strings -labsl_strings_internal -labsl_base -labsl_spinlock_wait -labsl_int128 -labsl_throw_delegate -labsl_raw_logging_internal -labsl_log_severity")
# As //third_party:spdlog.
spdlog=(-DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL)
common=(-std=c++20 -g -O1 -fno-omit-frame-pointer -I"$src" "${spdlog[@]}")
san=(-fsanitize=address,undefined -fno-sanitize-recover=all)

start=$(date +%s)
objs=()
for f in "${lib_sources[@]}"; do
  o="$work/obj/$(basename "${f%.cc}").o"
  "$cxx" "${common[@]}" "${san[@]}" -fsanitize=fuzzer-no-link -c "$src/$f" -o "$o"
  objs+=("$o")
done
for t in "${targets[@]}"; do
  "$cxx" "${common[@]}" "${san[@]}" -fsanitize=fuzzer "$src/tests/fuzz/vmbus/fuzz_$t.cc" \
    "${objs[@]}" $absl_libs -lspdlog -lfmt -pthread -o "$work/fuzz_$t"
done
"$cxx" "${common[@]}" "$src/tests/fuzz/vmbus/make_vmbus_seeds.cc" -o "$work/make_vmbus_seeds"
"$work/make_vmbus_seeds" "$work/seeds"
log "built ${#targets[@]} targets with $cxx in $(($(date +%s) - start)) s"

failed=0
summary=()
for t in "${targets[@]}"; do
  corpus="$corpus_root/$t"
  mkdir -p "$corpus"
  cp -n "$work/seeds/$t"/* "$corpus/" 2>/dev/null || true
  out="$work/$t.log"
  rc=0
  "$work/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -max_len=4096 -artifact_prefix="$work/artifacts/$t-" \
    "$corpus" >"$out" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$out" | tail -n 1 || true)
  files=$(find "$corpus" -type f | wc -l)
  line=$(printf '%-15s %4ss  %10s execs  %7s execs/s  %-10s  corpus %s' "$t" "$seconds" \
    "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$files")
  if ((rc != 0)); then
    failed=1
    line="$line  FAILED (exit $rc)"
    log "$t failed; the end of its log:"
    tail -n 60 "$out" >&2
  fi
  summary+=("$line")
done

echo "libFuzzer ($cxx, -fsanitize=fuzzer,address,undefined), $seconds s per target:"
printf '  %s\n' "${summary[@]}"
if ((failed)); then
  echo "crashing inputs: $work/artifacts (reproduce: $work/fuzz_<target> <file>)"
  exit 1
fi
echo "corpora: $corpus_root"
[[ -n ${TEST_TMPDIR:-} ]] || rm -rf "$work"
