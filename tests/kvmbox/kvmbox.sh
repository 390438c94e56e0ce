#!/usr/bin/env bash
# kvmbox: runs a command where /dev/kvm exists, on a host that has none.
#
# Some of the project's build hosts are themselves PVM guests whose kernel does not bind KVM
# ("kvm-pvm: this kernel is itself a kvm-pvm guest; not binding"): no /dev/kvm. kvmbox boots
# Debian's cloud kernel under QEMU with TCG and an emulated AMD CPU with SVM (-cpu max), loads
# kvm-amd there, shares the host's root filesystem into that VM with virtiofs (the same paths,
# read-write), and runs the command in it, as root, with the caller's environment and working
# directory. Guests of that KVM run at TCG speed (~100x faster than the software-emulated CPL0 of
# kvm_pvm hosts, and guest user mode works normally); the command itself runs ~10-50x slower
# than on the host.
#
#   kvmbox.sh check                       exit 0 if kvmbox can run here, else say why (exit 1)
#   kvmbox.sh run -- CMD [ARG...]          CMD's output on stdout, its exit status as ours
#                                         (125: kvmbox itself failed; the reason on stderr)
#   kvmbox.sh agent                       (internal) boots the shared VM and serves jobs
#
# One VM serves every caller of the machine (booting one costs 30 s to minutes): the first
# caller starts it (`agent`, in its own session), later callers queue their jobs there, and it
# powers off after HVSTACK_KVMBOX_IDLE_S (60) seconds without jobs. Jobs run concurrently; a job
# whose caller went away (killed by a test timeout) is killed inside the VM. Needs root, qemu-system-x86, /usr/lib/qemu/virtiofsd, busybox-static, and Debian's
# cloud kernel (tests/linux/fetch_kernel.sh downloads it once and caches it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${HVSTACK_KVMBOX_CACHE:-/var/tmp/hvstack/kvmbox}"
QEMU=/usr/bin/qemu-system-x86_64
VIRTIOFSD=/usr/lib/qemu/virtiofsd
BUSYBOX=/bin/busybox
# Bump when the initramfs recipe below changes.
RECIPE=6

log() { echo "kvmbox: $*" >&2; }
die() { log "$*"; exit 125; }

find_fetch_kernel() {
  local candidates=("$HERE/../linux/fetch_kernel.sh")
  if [[ -n ${RUNFILES_DIR:-} ]]; then candidates+=("$RUNFILES_DIR/hvstack/tests/linux/fetch_kernel.sh"); fi
  if [[ -n ${TEST_SRCDIR:-} ]]; then candidates+=("$TEST_SRCDIR/hvstack/tests/linux/fetch_kernel.sh"); fi
  local c
  for c in "${candidates[@]}"; do
    [[ -x $c ]] && { echo "$c"; return 0; }
  done
  return 1
}

# What is missing for kvmbox, or nothing.
missing() {
  [[ $(id -u) -eq 0 ]] || { echo "kvmbox needs root (virtiofsd shares / as root)"; return; }
  [[ -x $QEMU ]] || { echo "$QEMU not found (Debian package qemu-system-x86)"; return; }
  [[ -x $VIRTIOFSD ]] || { echo "$VIRTIOFSD not found (Debian package qemu-system-common)"; return; }
  [[ -x $BUSYBOX ]] || { echo "$BUSYBOX not found (Debian package busybox-static)"; return; }
  find_fetch_kernel >/dev/null || { echo "tests/linux/fetch_kernel.sh not found next to kvmbox"; return; }
  for tool in cpio flock; do
    command -v "$tool" >/dev/null || { echo "'$tool' not found"; return; }
  done
}

# Modules the L1 VM loads at boot, in dependency order: virtio + virtiofs for the shared root,
# KVM, and what tests use inside (TAP devices, bridges, veth pairs, loop devices).
MODULES=(
  drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio
  drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci
  fs/fuse/fuse fs/fuse/virtiofs
  virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd
  drivers/net/tun net/llc/llc net/802/stp net/bridge/bridge drivers/net/veth
  drivers/block/loop
)

# Prepares (once, cached) the L1 kernel and initramfs; prints "VMLINUX INITRAMFS".
prepare() {
  local fetch kdir release
  fetch=$(find_fetch_kernel) || die "tests/linux/fetch_kernel.sh not found"
  mkdir -p "$CACHE"
  kdir="$CACHE/kernel"
  # fetch_kernel.sh asks apt-cache which kernel is current and copies it out on every call:
  # 15-25 s under load, paid by every test that runs here. A kernel it prepared less than a day
  # ago is used as is.
  if [[ -f $kdir/kernel-release && -f $kdir/vmlinux && -L $kdir/root &&
        -n $(find "$kdir/kernel-release" -mmin -1440 2>/dev/null) ]]; then
    read -r release <"$kdir/kernel-release"
  else
    release=$(HVSTACK_KERNEL_CACHE="${HVSTACK_KERNEL_CACHE:-/var/tmp/hvstack/kernel}" \
      "$fetch" "$kdir" 2>"$CACHE/fetch.log") ||
      die "cannot get Debian's cloud kernel: $(tail -n 1 "$CACHE/fetch.log")"
  fi
  [[ -L $kdir/root ]] || die "fetch_kernel.sh left no unpacked tree ($kdir/root)"
  local mods="$kdir/root/lib/modules/$release/kernel"
  local key="$release-r$RECIPE"
  local initramfs="$CACHE/initramfs-$key.cpio"
  if [[ ! -f $initramfs ]]; then
    exec 8>"$CACHE/.lock"
    flock 8
    if [[ ! -f $initramfs ]]; then
      local tree
      tree=$(mktemp -d "$CACHE/initramfs.XXXXXX")
      mkdir -p "$tree"/{bin,mod,proc,sys,dev,host}
      cp "$BUSYBOX" "$tree/bin/busybox"
      local m
      for m in "${MODULES[@]}"; do
        [[ -f $mods/$m.ko ]] || die "module $m.ko missing from Debian's $release"
        cp "$mods/$m.ko" "$tree/mod/"
        echo "${m##*/}" >>"$tree/mod/order"
      done
      cp "$HERE/kvmbox_init.sh" "$tree/init"
      chmod 0755 "$tree/init"
      (cd "$tree" && find . | cpio -o -H newc --quiet) >"$initramfs.tmp"
      mv "$initramfs.tmp" "$initramfs"
      rm -rf "$tree"
    fi
    exec 8>&-
  fi
  echo "$kdir/vmlinux $initramfs"
}

# The shared VM: one per machine at a time, started by the first job that needs it and
# powered off after AGENT_IDLE_S seconds without jobs. Jobs from any number of callers run in it
# concurrently (Bazel runs several tests at once); each caller waits for its own.
AGENT="$CACHE/agent"
AGENT_IDLE_S=${HVSTACK_KVMBOX_IDLE_S:-60}
AGENT_MEMORY_MIB=${HVSTACK_KVMBOX_MEMORY_MIB:-6144}
AGENT_CPUS=${HVSTACK_KVMBOX_CPUS:-2}

agent_running() {
  # The agent holds the lock for its whole life.
  [[ -e $AGENT/lock ]] && ! flock -n "$AGENT/lock" true
}

# `kvmbox.sh agent`: boots the shared VM and serves jobs until it idles out. Exits at once when
# another agent runs.
agent() {
  local why
  why=$(missing)
  [[ -z $why ]] || die "$why"
  mkdir -p "$AGENT/jobs"
  exec 9>"$AGENT/lock"
  flock -n 9 || exit 0
  local vmlinux initramfs
  read -r vmlinux initramfs < <(prepare)
  local run
  run=$(mktemp -d "$AGENT/vm.XXXXXX")
  # The VM's init rewrites `heartbeat` every 5 s once it serves jobs (wedge detection in run()).
  rm -f "$AGENT/heartbeat" "$AGENT/qemu.pid"
  local pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait; rm -rf "$run"' EXIT
  trap 'exit 143' TERM INT
  "$VIRTIOFSD" --socket-path="$run/vfs.sock" -o source=/ -o cache=auto -o sandbox=chroot \
    -o posix_lock -o flock -o xattr >"$run/virtiofsd.log" 2>&1 &
  pids+=($!)
  local i
  for i in $(seq 100); do [[ -S $run/vfs.sock ]] && break; sleep 0.05; done
  [[ -S $run/vfs.sock ]] || die "virtiofsd did not start: $(tail -n 3 "$run/virtiofsd.log")"
  # q35 rather than microvm: the cloud kernel's boot hangs on microvm under TCG here (timer
  # calibration without a PIT/HPET); SeaBIOS costs a few seconds.
  # TCG single-threaded (both vCPUs take turns on one host thread), not MTTCG: under QEMU 7.2's
  # MTTCG a vCPU can keep running a stale translation of kernel text that another vCPU has just
  # live-patched (static keys: text_poke_bp writes int3, then the original bytes). The stale int3
  # traps, Linux sees no int3 in memory and re-executes the instruction, forever (RIP at
  # asm_exc_int3/error_return, the other vCPU waiting for a lock). KVM flips static keys on every
  # vCPU creation and teardown (apic_sw_disabled), so nested VM churn wedged the VM every 15-20 min;
  # flipping sched_schedstats in a loop wedged MTTCG within 30 s and never wedged single-threaded
  # TCG (README, "Wedges").
  "$QEMU" -M q35,memory-backend=mem -accel "tcg,thread=${HVSTACK_KVMBOX_TCG_THREAD:-single}" -cpu max -smp "$AGENT_CPUS" \
    -m "${AGENT_MEMORY_MIB}M" \
    -object "memory-backend-memfd,id=mem,size=${AGENT_MEMORY_MIB}M,share=on" \
    -chardev "socket,id=vfs,path=$run/vfs.sock" -device vhost-user-fs-pci,chardev=vfs,tag=hostroot \
    -vga none -nodefaults -no-user-config -nographic -no-reboot -serial "file:$AGENT/console" \
    -monitor "unix:$AGENT/monitor.sock,server=on,wait=off" \
    -kernel "$vmlinux" -initrd "$initramfs" \
    -append "console=ttyS0 quiet panic=-1 clocksource=tsc tsc=reliable kvmbox.agent=$AGENT kvmbox.idle=$AGENT_IDLE_S" \
    >"$AGENT/qemu.log" 2>&1 &
  local qemu=$!
  pids+=($qemu)
  echo "$qemu" >"$AGENT/qemu.pid"
  wait "$qemu" || true
}

# Writes a job for "$@" (job, tailer: the caller's locals).
submit_job() {
  job=$(mktemp -d "$AGENT/jobs/job.XXXXXX")
  {
    echo "cd $(printf '%q' "$PWD") || exit 125"
    export -p | grep -v -E '^declare -x (BASH_[A-Z_]*|SHLVL|OLDPWD|_)='
    echo "export HVSTACK_IN_KVMBOX=1"
    printf 'exec'
    printf ' %q' "$@"
    echo
  } >"$job/cmd"
  : >"$job/out"
  echo 0 >"$job/alive"
  touch "$job/submitted"
  tail -n +1 -f "$job/out" &
  tailer=$!
}

# The VM's heartbeat, unchanged for this long while it runs: it is wedged.
WEDGED_AFTER_S=${HVSTACK_KVMBOX_WEDGED_S:-180}

# Says what the VM's CPUs were doing (QEMU's monitor), then ends it.
end_wedged_vm() {
  log "the shared VM stopped serving jobs (no heartbeat for ${WEDGED_AFTER_S} s); ending it"
  /usr/bin/python3 - "$AGENT/monitor.sock" <<'PY' >&2 || true
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"info cpus\ninfo registers -a\n")
time.sleep(2)
out = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
except OSError:
    pass
lines = [l for l in out.decode(errors="replace").splitlines() if "RIP" in l or "CPU #" in l or "thread_id" in l]
print("kvmbox: vCPUs of the wedged VM:\n" + "\n".join(lines[:16]))
PY
  local pid=""
  [[ -f $AGENT/qemu.pid ]] && read -r pid <"$AGENT/qemu.pid"
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
  tail -n 30 "$AGENT/console" >&2 || true
}

# Waits for the job; 0 when it ran to its end (its status in $job/rc), 1 when the VM ended or
# wedged under it.
wait_for_job() {
  local ticks=0 started_agent=0 beat="" last_beat="" stale=0
  while [[ ! -f $job/rc ]]; do
    if ! agent_running; then
      if [[ -f $job/started ]]; then
        log "the shared VM ended while the job ran; its console:"
        tail -n 30 "$AGENT/console" >&2 || true
        return 1
      fi
      # No VM yet (or it idled out just now): start one, in its own session so that it outlives
      # this caller and serves the next ones.
      if ((started_agent == 0 || ticks % 50 == 0)); then
        setsid "$HERE/kvmbox.sh" agent </dev/null >>"$CACHE/agent.log" 2>&1 &
        started_agent=1
      fi
    fi
    sleep 0.2
    ticks=$((ticks + 1))
    # Every ~5 s: keep-alive for the VM's watchdog, and ours for the VM.
    if ((ticks % 25 == 0)); then
      echo "$ticks" >"$job/alive"
      beat=""
      [[ -f $AGENT/heartbeat ]] && read -r beat <"$AGENT/heartbeat" 2>/dev/null
      if [[ -n $beat && $beat == "$last_beat" ]]; then
        stale=$((stale + 5))
        if ((stale >= WEDGED_AFTER_S)) && agent_running; then
          end_wedged_vm
          for _ in $(seq 50); do agent_running || break; sleep 0.2; done
          return 1
        fi
      else
        stale=0
      fi
      last_beat=$beat
    fi
  done
  return 0
}

run() {
  while (($#)); do
    case $1 in
      --) shift; break ;;
      *) die "unknown option $1 (usage: kvmbox.sh run -- CMD...)" ;;
    esac
  done
  (($#)) || die "no command given"
  local why
  why=$(missing)
  [[ -z $why ]] || die "$why"
  prepare >/dev/null
  mkdir -p "$AGENT/jobs"

  local job="" tailer=""
  cleanup() {
    [[ -n $tailer ]] && kill "$tailer" 2>/dev/null
    # An abandoned job (we were killed: a test timeout) is killed inside the VM once `alive`
    # stops changing; its directory goes with it.
    [[ -n $job ]] || return 0
    rm -f "$job/alive"
    if [[ -f $job/rc || ! -f $job/started ]] || ! agent_running; then rm -rf "$job"; fi
  }
  trap cleanup EXIT
  trap 'exit 143' TERM INT
  # A VM that ends (or wedges) under a job costs that job one more run in a fresh VM, not the
  # test: the shared VM has wedged now and then (both vCPUs busy, jobs no longer picked up,
  # virtiofsd idle; cause not yet known).
  local attempt
  for attempt in 1 2; do
    submit_job "$@"
    if wait_for_job; then break; fi
    ((attempt == 1)) || exit 125
    log "running the command again in a fresh VM"
    cleanup
    job="" tailer=""
  done
  sleep 0.3  # let tail print the last lines
  local rc
  rc=$(cat "$job/rc")
  exit "$rc"
}

case "${1:-}" in
  check)
    why=$(missing)
    if [[ -n $why ]]; then echo "$why"; exit 1; fi
    exit 0
    ;;
  prepare) prepare ;;
  run) shift; run "$@" ;;
  agent) agent ;;
  *) echo "usage: kvmbox.sh check | prepare | run -- CMD... | agent" >&2; exit 2 ;;
esac
