#!/bin/busybox sh
# PID 1 of kvmbox's VM (see kvmbox.sh): load virtio, virtiofs and KVM, mount the host's root
# filesystem, give it this VM's own /proc, /sys, /dev and cgroups, run the job, record its exit
# status, power off.
/bin/busybox mkdir -p /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
  insmod "/mod/$m.ko" || echo "kvmbox: insmod $m failed" >/dev/console
done </mod/order
job=$(sed -n 's/.*kvmbox\.job=\([^ ]*\).*/\1/p' /proc/cmdline)
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
# A loopback interface, as every network namespace has.
ip link set lo up 2>/dev/null
chroot /host /bin/bash "$job/cmd" >"/host$job/out" 2>&1 </dev/null
echo $? >"/host$job/rc.tmp"
mv "/host$job/rc.tmp" "/host$job/rc"
sync
poweroff -f
