#!/usr/bin/env bash
# summarize_results.py against hand-made test logs: plain and sharded targets, a failing case,
# a skipped one, a shard that left no result this run, an old result, a target that became
# sharded.
set -euo pipefail
script="${TEST_SRCDIR:-$(dirname "$0")/..}/hvstack/tests/summarize_results.py"
[[ -f $script ]] || script="$(dirname "$0")/summarize_results.py"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

xml() {  # xml DIR PASSED FAILED SKIPPED
  mkdir -p "$1"
  {
    echo '<testsuites><testsuite>'
    for ((i = 0; i < $2; i++)); do echo "<testcase classname='T' name='p$i'/>"; done
    for ((i = 0; i < $3; i++)); do echo "<testcase classname='T' name='f$i'><failure/></testcase>"; done
    for ((i = 0; i < $4; i++)); do echo "<testcase classname='T' name='s$i' result='skipped'/>"; done
    echo '</testsuite></testsuites>'
  } >"$1/test.xml"
}

since=$(($(date +%s) - 5))
xml "$logs/a/plain" 3 0 1
xml "$logs/a/sharded/shard_1_of_2" 2 0 0
xml "$logs/a/sharded/shard_2_of_2" 1 1 0
out=$(/usr/bin/python3 "$script" --testlogs "$logs" --since "$since" --bazel-exit-code 3 \
  //a:plain //a:sharded) && rc=0 || rc=$?
echo "$out"
[[ $rc -eq 1 ]] || { echo "FAIL: exit $rc with a failing case, want 1"; exit 1; }
grep -qx '6 passed, 1 failed, 1 skipped' <<<"$out" || { echo "FAIL: shards not summed"; exit 1; }
grep -q 'FAILED: //a:sharded (shard_2_of_2) T.f0' <<<"$out" || { echo "FAIL: failing shard not named"; exit 1; }

# All green, then one shard's result is older than the run: that shard is a failure.
xml "$logs/b/sharded/shard_1_of_2" 2 0 0
xml "$logs/b/sharded/shard_2_of_2" 1 0 0
touch -d '@1000' "$logs/b/sharded/shard_2_of_2/test.xml"
out=$(/usr/bin/python3 "$script" --testlogs "$logs" --since "$since" --bazel-exit-code 0 \
  //b:sharded //b:missing) && rc=0 || rc=$?
echo "$out"
grep -q 'FAILED (no result this run): //b:sharded (shard_2_of_2)' <<<"$out" || { echo "FAIL: stale shard"; exit 1; }
grep -q 'FAILED (no result this run): //b:missing' <<<"$out" || { echo "FAIL: missing target"; exit 1; }
grep -qx '2 passed, 2 failed, 0 skipped' <<<"$out" || { echo "FAIL: counts"; exit 1; }

# A target that became sharded in an output base that ran it unsharded before: its old test.xml
# is stale and the fresh shards are the result (CI reuses its output base).
xml "$logs/c/resharded" 9 0 0
touch -d '@1000' "$logs/c/resharded/test.xml"
xml "$logs/c/resharded/shard_1_of_2" 1 0 0
xml "$logs/c/resharded/shard_2_of_2" 1 0 0
out=$(/usr/bin/python3 "$script" --testlogs "$logs" --since "$since" --bazel-exit-code 0 \
  //c:resharded) && rc=0 || rc=$?
echo "$out"
[[ $rc -eq 0 ]] || { echo "FAIL: stale unsharded test.xml beside fresh shards"; exit 1; }
grep -qx '2 passed, 0 failed, 0 skipped' <<<"$out" || { echo "FAIL: resharded counts"; exit 1; }
echo PASS
