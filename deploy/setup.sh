#!/usr/bin/env bash
# The two ways to set up hvstack on a fresh Debian 12 machine (as root):
#   deploy/setup.sh demo   install, build, run vmms on ./state with a demo VM (foreground)
#   deploy/setup.sh test   install, build, run the whole test suite; ends with "N passed, N failed"
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

BAZEL_FLAGS=(--curses=no --color=no --show_progress_rate_limit=30)

die() { echo "setup: $*" >&2; exit 1; }

# Prints the single output file of a Bazel target.
bazel_output() {
  bazel cquery --curses=no --color=no --output=files "$1" 2>/dev/null | head -n1
}

demo() {
  bash deploy/install-deps.sh
  bazel build "${BAZEL_FLAGS[@]}" //vmms:vmms //vmwp:vmwp //cli:vmctl //guest:hello
  local vmms vmctl hello state
  vmms="$REPO/$(bazel_output //vmms:vmms)"
  vmctl="$REPO/$(bazel_output //cli:vmctl)"
  hello="$REPO/$(bazel_output //guest:hello)"
  state="${HVSTACK_STATE_DIR:-$REPO/state}"
  mkdir -p "$state"
  export HVSTACK_SOCKET="$state/vmms.sock"

  "$vmms" --state-dir "$state" &
  local vmms_pid=$!
  trap 'kill "$vmms_pid" 2>/dev/null; wait "$vmms_pid" 2>/dev/null' INT TERM
  for _ in $(seq 100); do
    [[ -S "$HVSTACK_SOCKET" ]] && "$vmctl" list >/dev/null 2>&1 && break
    kill -0 "$vmms_pid" 2>/dev/null || die "vmms exited during start-up"
    sleep 0.1
  done

  if ! "$vmctl" show demo >/dev/null 2>&1; then
    "$vmctl" create demo --kernel "$hello" --memory 64 --cpus 1 \
      --cmdline "console=ttyS0 hvstack.demo=1"
  fi
  "$vmctl" start demo
  sleep 0.5
  echo "---- console of VM 'demo' ----"
  "$vmctl" console demo --no-follow
  echo "------------------------------"
  "$vmctl" list
  cat <<MSG

vmms is running on $HVSTACK_SOCKET (pid $vmms_pid), state in $state.
Try:  export HVSTACK_SOCKET=$HVSTACK_SOCKET
      $vmctl start demo && $vmctl console demo --no-follow && $vmctl show demo
Ctrl-C stops vmms.
MSG
  wait "$vmms_pid"
}

run_tests() {
  bash deploy/install-deps.sh
  local since
  since=$(date +%s)
  local targets
  mapfile -t targets < <(bazel query --noshow_progress 'tests(//...)' 2>/dev/null)
  # Failures are counted from the test logs below, so a failing test or target does not stop
  # the run here; Bazel's exit code 1 (some target failed to build) is counted as one failure.
  local bazel_rc=0
  bazel test "${BAZEL_FLAGS[@]}" --keep_going --nocache_test_results --test_output=errors //... || bazel_rc=$?
  /usr/bin/python3 tests/summarize_results.py --testlogs "$REPO/bazel-testlogs" \
    --since "$since" --bazel-exit-code "$bazel_rc" "${targets[@]}"
}

case "${1:-}" in
  demo) demo ;;
  test) run_tests ;;
  *) echo "usage: deploy/setup.sh demo|test" >&2; exit 2 ;;
esac
