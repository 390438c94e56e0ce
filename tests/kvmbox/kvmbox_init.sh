#!/bin/busybox sh
# PID 1 of kvmbox's shared VM (see kvmbox.sh): load virtio, virtiofs and KVM, mount the host's
# root filesystem, give it this VM's own /proc, /sys, /dev and cgroups, then serve jobs from
# <agent>/jobs until none came for the idle time, and power off.
#
# A job is a directory <agent>/jobs/job.X with `cmd` (a bash script) and `submitted`. The server
# marks it `started`, runs `cmd` chrooted into the host's root in a session of its own, writes its
# output to `out` and its exit status to `rc`. The caller rewrites `alive` every few seconds; a
# running job whose `alive` stopped changing for 30 s (or vanished) lost its caller and is killed.
/bin/busybox mkdir -p /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
  insmod "/mod/$m.ko" || echo "kvmbox: insmod $m failed" >/dev/console
done </mod/order
arg() { sed -n "s/.*kvmbox\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
agent=$(arg agent)
idle=$(arg idle)
[ -n "$idle" ] || idle=60
fail() {
  echo "kvmbox: $*" >/dev/console
  poweroff -f
}
mount -t virtiofs hostroot /host || fail "cannot mount the host's root filesystem"
[ -e /dev/kvm ] || fail "no /dev/kvm in the VM (kvm-amd did not load: no SVM in the emulated CPU?)"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts
mount -t tmpfs shm /host/dev/shm
# Cgroups as the host has them (v1 controllers + the unified hierarchy), private to this VM.
mount -t tmpfs -o mode=755 cgroup /host/sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir -p "/host/sys/fs/cgroup/$c"
  mount -t cgroup -o "$c" cgroup "/host/sys/fs/cgroup/$c" || echo "kvmbox: cgroup $c unavailable" >/dev/console
done
mkdir -p /host/sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup/unified
ip link set lo up 2>/dev/null

jobs="/host$agent/jobs"
state=/run/kvmbox
mkdir -p "$state"
# Polled twice a second; the keep-alive checks (every 5 s) read files with the shell's own
# `read`: every fork costs milliseconds of emulated CPU that the tests need.
idle_ticks=0
tick=0
while :; do
  busy=0
  tick=$((tick + 1))
  for d in "$jobs"/job.*; do
    [ -d "$d" ] || continue
    id=${d##*/}
    if [ ! -f "$d/started" ]; then
      [ -f "$d/submitted" ] || continue
      : >"$d/started"
      # The job's own session: killing it kills everything it started.
      setsid sh -c 'chroot /host /bin/bash "$1/cmd" >"/host$1/out" 2>&1 </dev/null
                    echo $? >"/host$1/rc.tmp"; mv "/host$1/rc.tmp" "/host$1/rc"' \
        job "${d#/host}" &
      echo $! >"$state/$id.pid"
      echo "- 0" >"$state/$id.alive"
    fi
    [ -f "$state/$id.pid" ] || continue
    if [ -f "$d/rc" ]; then
      rm -f "$state/$id".*
      continue
    fi
    busy=1
    [ $((tick % 10)) = 0 ] || continue
    # The caller rewrites `alive` with a new count every few seconds; unchanged for 30 s (six
    # checks) or gone: the caller went away.
    now=gone
    [ -f "$d/alive" ] && read -r now <"$d/alive"
    read -r seen stale <"$state/$id.alive"
    if [ "$now" = "$seen" ]; then stale=$((stale + 1)); else stale=0; fi
    echo "$now $stale" >"$state/$id.alive"
    if [ "$now" = gone ] || [ "$stale" -ge 6 ]; then
      read -r pid <"$state/$id.pid"
      kill -KILL -- "-$pid" 2>/dev/null
      kill -KILL "$pid" 2>/dev/null
      echo "kvmbox: killed $id: its caller went away" >/dev/console
      rm -f "$state/$id".*
      rm -rf "$d"
    fi
  done
  # The host side calls the VM wedged when this stops changing (kvmbox.sh wait_for_job).
  [ $((tick % 10)) = 0 ] && echo "$tick" >"/host$agent/heartbeat"
  if [ "$busy" = 1 ]; then
    idle_ticks=0
  else
    idle_ticks=$((idle_ticks + 1))
    [ "$idle_ticks" -gt $((idle * 2)) ] && break
  fi
  sleep 0.5
done
sync
poweroff -f
