#!/usr/bin/env bash
# Installs every Debian package hvstack needs to build, test and run. Idempotent; needs root.
set -euo pipefail

PACKAGES=(
  # Build: Bazel 4.2.3 from Debian, run offline (see WORKSPACE), and the C++ toolchain.
  bazel-bootstrap bazel-platforms bazel-rules-java g++ make
  # Libraries, all used through //third_party.
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev libabsl-dev
  libsqlite3-dev libgtest-dev libgmock-dev libbenchmark-dev libspdlog-dev libfmt-dev zlib1g-dev
  libcli11-dev nlohmann-json3-dev libseccomp-dev libcap-ng-dev libsystemd-dev
  # Disks in the worker: io_uring for raw images, libnbd for qcow2/VHDX served over NBD.
  liburing-dev libnbd-dev
  # vsp/storage's NBD tests serve qcow2 images with qemu-nbd (qemu-img makes them).
  qemu-utils
  # vmms: TAP devices and bridges through rtnetlink.
  libnl-3-dev libnl-route-3-dev
  # Tests: an independent gRPC client, guest initramfs tooling, fuzzing.
  python3-grpcio python3-protobuf busybox-static cpio clang-14 libfuzzer-14-dev libclang-rt-14-dev
  sqlite3 lz4 pkg-config
  # tests/integration/access_test: certificates for the TLS listener.
  openssl
  # deploy/install_test: systemd-analyze verify, systemd-sysusers, systemd-tmpfiles (--root).
  systemd
  # Disks (issue 11): qemu-img (image checks, qcow2/VHDX creation) and qemu-nbd (serves qcow2/VHDX
  # to the worker) from qemu-utils; test images: sfdisk (fdisk), mkfs.ext4/dumpe2fs/debugfs.
  qemu-utils fdisk e2fsprogs
  # The libvirt backend (vmms --libvirt-uri) and its tests: libvirt's C API, its QEMU driver
  # (embedded or libvirtd), QEMU itself; virsh only for tests acting behind vmms's back.
  libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
  # ACPICA (iasl, acpiexec): vmwp/acpi's tests check the guest's ACPI tables with them.
  acpica-tools
  # tests/linux/build_test_kernel.sh: the Linux test kernel from Debian's own source (kbuild
  # needs bc, bison, flex; objtool needs libelf; the tarball is .tar.xz).
  linux-source-6.1 bc bison flex libelf-dev xz-utils gcc
  # Network tests (issue 12): bridges and links in the test's own namespace (ip), DHCP for a
  # Linux guest (dnsmasq).
  iproute2 dnsmasq-base
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# libvirt's QEMU driver refuses to start unless the user libvirt-qemu resolves (Debian's
# libvirt-daemon-system creates it; hvstack only needs the driver, not the system daemon).
ensure_libvirt_qemu_user() {
  getent passwd libvirt-qemu >/dev/null && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: user libvirt-qemu missing; run as root to create it" >&2
    return 1
  fi
  adduser --system --group --no-create-home --quiet libvirt-qemu
}

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  ensure_libvirt_qemu_user
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
ensure_libvirt_qemu_user
