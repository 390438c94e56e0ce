#!/usr/bin/env bash
# Reproducer for kvmbox's wedges (README, "Wedges"): flips the sched_schedstats static key, which
# Linux live-patches into __schedule, while both vCPUs context-switch through pipes. Under QEMU's
# multi-threaded TCG the VM wedged within 30 s; it must run for the whole time here.
#   tests/kvmbox/kvmbox.sh run -- tests/kvmbox/stress_static_keys.sh [SECONDS]
set -euo pipefail
[[ -n ${HVSTACK_IN_KVMBOX:-} ]] || { echo "run me inside kvmbox (kvmbox.sh run -- $0)" >&2; exit 2; }
end=$((SECONDS + ${1:-240}))
for _ in 0 1; do
  (while ((SECONDS < end)); do dd if=/dev/zero bs=1 count=20000 status=none | cat >/dev/null; done) &
done
flips=0
while ((SECONDS < end)); do
  echo 1 >/proc/sys/kernel/sched_schedstats
  echo 0 >/proc/sys/kernel/sched_schedstats
  flips=$((flips + 1))
  ((flips % 100 == 0)) && echo "flips=$flips t=${SECONDS}s"
done
wait
echo "done: $flips flips of sched_schedstats"
