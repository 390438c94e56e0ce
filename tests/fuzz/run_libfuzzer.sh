#!/usr/bin/env bash
# Builds one suite of libFuzzer targets with clang-14 (Bazel's toolchain is GCC, which has no
# libFuzzer) and fuzzes each target for a bounded time. The suite file (a bash fragment, path
# relative to the workspace) names the targets, the library sources they link and the
# libFuzzer flags; see loader.suite and vmbus/vmbus.suite.
#
#   run_libfuzzer.sh SUITE_FILE [SECONDS_PER_TARGET] [CORPUS_DIR]
#
# Under `bazel test` (a suite's *_fuzz_test): 15 s per target (HVSTACK_FUZZ_SECONDS
# overrides), fresh corpora from the suite's seeds. Under `bazel run` (a suite's campaign
# target): a long campaign whose corpora persist (default ~/.cache/hvstack/fuzz-corpus), so
# each campaign starts where the last one stopped.
#
# A crash, a leak, a sanitizer report or a timeout fails the run and leaves the input in
# the artifacts directory printed at the end. Without clang-14 or its fuzzer runtime the
# run is skipped with a message naming the missing Debian packages.
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 SUITE_FILE [SECONDS_PER_TARGET] [CORPUS_DIR]" >&2; exit 2; }
suite_file=$1
shift

# Sources: the runfiles tree mirrors the workspace.
if [[ -n ${TEST_SRCDIR:-} ]]; then
  src="$TEST_SRCDIR/hvstack"
elif [[ -n ${RUNFILES_DIR:-} ]]; then
  src="$RUNFILES_DIR/hvstack"
elif [[ -d "$0.runfiles/hvstack" ]]; then
  src="$0.runfiles/hvstack"
else
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi
[[ -f $src/$suite_file ]] || { echo "fuzz: error: suite $suite_file not found under $src" >&2; exit 1; }

# The suite defines: suite_name, harness_dir, targets, lib_sources, absl_components,
# extra_cflags, extra_libs, fuzz_flags, and the function make_seeds SEED_DIR; optionally
# proto_sources (.proto files compiled with Debian's protoc into $work/gen, which is on
# the include path, and linked in: add -lprotobuf to extra_libs).
suite_name="" harness_dir="" targets=() lib_sources=() absl_components=()
extra_cflags=() extra_libs=() fuzz_flags=() proto_sources=()
# shellcheck source=/dev/null
source "$src/$suite_file"
[[ -n $suite_name && ${#targets[@]} -gt 0 ]] || { echo "fuzz: error: $suite_file defines no suite_name/targets" >&2; exit 1; }

log() { echo "$suite_name: $*" >&2; }

# Skips with a reason; under bazel test the JUnit XML says "skipped" so the suite summary
# counts it as such.
skip() {
  log "SKIPPED: $*"
  if [[ -n ${XML_OUTPUT_FILE:-} ]]; then
    local msg=${*//&/&amp;}
    msg=${msg//</&lt;}
    msg=${msg//\"/&quot;}
    cat >"$XML_OUTPUT_FILE" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="$suite_name" tests="1" failures="0" skipped="1">
<testcase name="$suite_name" status="notrun" result="skipped"><skipped message="$msg"/></testcase>
</testsuite></testsuites>
XML
  fi
  exit 0
}

seconds=${1:-${HVSTACK_FUZZ_SECONDS:-15}}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { log "error: SECONDS must be a positive integer, got '$seconds'"; exit 2; }
if [[ -n ${TEST_TMPDIR:-} ]]; then
  work="$TEST_TMPDIR/fuzz"
  corpus_root=${2:-$work/corpus}
else
  work=$(mktemp -d "/tmp/hvstack-$suite_name.XXXXXX")
  corpus_root=${2:-${HVSTACK_FUZZ_CORPUS:-$HOME/.cache/hvstack/fuzz-corpus}}
fi
mkdir -p "$work/obj" "$work/artifacts" "$work/seeds" "$corpus_root"

cxx=${HVSTACK_FUZZ_CXX:-clang++-14}
if ! command -v "$cxx" >/dev/null; then
  skip "$cxx not found; install Debian's clang-14, libfuzzer-14-dev and libclang-rt-14-dev (deploy/install-deps.sh)"
fi
# The fuzzer and sanitizer runtimes come from libclang-rt-14-dev (and libfuzzer-14-dev).
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$work/probe.cc"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$work/probe.cc" -o "$work/probe" 2>"$work/probe.log"; then
  skip "$cxx cannot link a libFuzzer binary ($(tail -n 1 "$work/probe.log")); install libclang-rt-14-dev and libfuzzer-14-dev"
fi

absl_libs=$(pkg-config --libs "${absl_components[@]}")
common=(-std=c++20 -g -O1 -fno-omit-frame-pointer -I"$src" "${extra_cflags[@]}")
san=(-fsanitize=address,undefined -fno-sanitize-recover=all)

start=$(date +%s)
objs=()
if ((${#proto_sources[@]} > 0)); then
  mkdir -p "$work/gen"
  protoc -I"$src" -I/usr/include --cpp_out="$work/gen" "${proto_sources[@]/#/$src/}"
  common+=(-I"$work/gen")
  for f in "${proto_sources[@]}"; do
    o="$work/obj/$(echo "${f%.proto}" | tr / _).pb.o"
    # Generated code: neither instrumented nor optimized (most of the build's time otherwise).
    "$cxx" "${common[@]}" -O0 -c "$work/gen/${f%.proto}.pb.cc" -o "$o"
    objs+=("$o")
  done
fi
for f in "${lib_sources[@]}"; do
  o="$work/obj/$(basename "${f%.cc}").o"
  "$cxx" "${common[@]}" "${san[@]}" -fsanitize=fuzzer-no-link -c "$src/$f" -o "$o"
  objs+=("$o")
done
for t in "${targets[@]}"; do
  # shellcheck disable=SC2086 # pkg-config output is a word list
  "$cxx" "${common[@]}" "${san[@]}" -fsanitize=fuzzer "$src/$harness_dir/fuzz_$t.cc" \
    "${objs[@]}" $absl_libs "${extra_libs[@]}" -pthread -o "$work/fuzz_$t"
done
make_seeds "$work/seeds"
log "built ${#targets[@]} targets with $cxx in $(($(date +%s) - start)) s"

failed=0
summary=()
for t in "${targets[@]}"; do
  corpus="$corpus_root/$t"
  mkdir -p "$corpus"
  if [[ -d $work/seeds/$t ]]; then cp -n "$work/seeds/$t"/* "$corpus/" 2>/dev/null || true; fi
  out="$work/$t.log"
  rc=0
  "$work/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 "${fuzz_flags[@]}" -artifact_prefix="$work/artifacts/$t-" \
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

echo "$suite_name: libFuzzer ($cxx, -fsanitize=fuzzer,address,undefined), $seconds s per target:"
printf '  %s\n' "${summary[@]}"
if ((failed)); then
  echo "crashing inputs: $work/artifacts (reproduce: $work/fuzz_<target> <file>)"
  exit 1
fi
echo "corpora: $corpus_root"
[[ -n ${TEST_TMPDIR:-} ]] || rm -rf "$work"
