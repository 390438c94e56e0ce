#!/usr/bin/env bash
# The two ways to set up hvstack on a fresh Debian 12 machine (as root):
#   deploy/setup.sh demo   install, build, run vmms on ./state with a demo VM (foreground)
#   deploy/setup.sh test   install, build, run the whole test suite; ends with "N passed, N failed"
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

BAZEL_FLAGS=(--curses=no --color=no --show_progress_rate_limit=30)

die() { echo "setup: $*" >&2; exit 1; }

# Where Bazel put its outputs (not through the bazel-* symlinks, which another output base may
# have taken over).
bazel_bin() {
  bazel info --noshow_progress bazel-bin 2>/dev/null
}

demo() {
  bash deploy/install-deps.sh
  bazel build "${BAZEL_FLAGS[@]}" //:binaries //guest:hello
  # Stable copies under out/, so that the demo VM's kernel path and the commands printed below
  # survive rebuilds and Bazel's output-base changes.
  local bin out="$REPO/out" vmms vmctl hello state
  bin=$(bazel_bin)
  mkdir -p "$out/bin" "$out/guest"
  install -m 0755 "$bin/vmms/vmms" "$bin/vmwp/vmwp" "$bin/cli/vmctl" "$out/bin/"
  install -m 0644 "$bin/guest/hello.elf" "$out/guest/"
  vmms="$out/bin/vmms"
  vmctl="$out/bin/vmctl"
  hello="$out/guest/hello.elf"
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
  # Manual targets (need the network on first use, or a long time) are not part of the suite.
  mapfile -t targets < <(bazel query --noshow_progress \
    'tests(//...) except attr(tags, "manual", //...)' 2>/dev/null)
  # The Linux test kernel, built once per machine from Debian's linux-source-6.1 (cached under
  # /var/tmp/hvstack/test-kernel): here rather than inside the first test that needs it, so its
  # time shows apart from the tests' and no test's timeout pays for it. A failure is reported
  # here, and the tests that need the kernel fail with the same message.
  local kernel_since kernel
  kernel_since=$(date +%s)
  echo "setup: Linux test kernel (tests/linux/build_test_kernel.sh; ~10 min on an idle 2-core machine the first time)"
  if kernel=$(bash tests/linux/build_test_kernel.sh); then
    echo "setup: test kernel $kernel ready in $(($(date +%s) - kernel_since)) s"
  else
    echo "setup: building the Linux test kernel failed after $(($(date +%s) - kernel_since)) s" >&2
  fi
  # Failures are counted from the test logs below, so a failing test or target does not stop
  # the run here; Bazel's exit code 1 (some target failed to build) is counted as one failure.
  # Hosts without /dev/kvm (the project's build hosts are PVM guests now): the KVM tests that
  # hold up under nested TCG run in kvmbox (tests/kvmbox/README.md), one at a time (Bazel's
  # "exclusive" tag: after the others, each with the machine to itself); those sized for real
  # KVM skip unless HVSTACK_KVMBOX=always. HVSTACK_KVMBOX=never skips them all.
  echo "setup: KVM tests on a host without /dev/kvm: HVSTACK_KVMBOX=${HVSTACK_KVMBOX:-auto}"
  local bazel_rc=0
  bazel test "${BAZEL_FLAGS[@]}" --keep_going --nocache_test_results --test_output=errors \
    --test_env=HVSTACK_KVMBOX="${HVSTACK_KVMBOX:-auto}" //... || bazel_rc=$?
  # Ask Bazel where the logs are: the bazel-testlogs symlink may point at another output base.
  local testlogs
  testlogs=$(bazel info --noshow_progress bazel-testlogs 2>/dev/null)
  /usr/bin/python3 tests/summarize_results.py --testlogs "$testlogs" \
    --since "$since" --bazel-exit-code "$bazel_rc" "${targets[@]}"
}

case "${1:-}" in
  demo) demo ;;
  test) run_tests ;;
  *) echo "usage: deploy/setup.sh demo|test" >&2; exit 2 ;;
esac
