#!/usr/bin/env bash
# Installs hvstack from Bazel's output: vmms and vmwp to PREFIX/libexec/hvstack, vmctl to
# PREFIX/bin, the systemd unit, sysusers.d and tmpfiles.d entries to PREFIX/lib/...
#
#   deploy/install.sh [--from BAZEL_BIN] [--prefix /usr] [--destdir DIR]
#
# --from     directory holding vmms/vmms, vmwp/vmwp and cli/vmctl (default: `bazel info bazel-bin`
#            run in the repository; build //vmms:vmms //vmwp:vmwp //cli:vmctl first)
# --prefix   installation prefix (default /usr); the unit's paths follow it
# --destdir  staging root, as DESTDIR (default: $DESTDIR, else none). With a staging root nothing
#            on this machine is touched; without one (as root) the hvstack group and directories
#            are created (systemd-sysusers, systemd-tmpfiles) and systemd is reloaded if it runs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$REPO/deploy"
from=""
prefix="/usr"
destdir="${DESTDIR:-}"

die() { echo "install.sh: $*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --from) from="${2:?--from needs a directory}"; shift 2 ;;
    --from=*) from="${1#*=}"; shift ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ "$prefix" == /* ]] || die "--prefix must be absolute, got '$prefix'"
prefix="${prefix%/}"
if [[ -z "$from" ]]; then
  from=$(cd "$REPO" && bazel info --noshow_progress bazel-bin 2>/dev/null) ||
    die "cannot ask Bazel for bazel-bin; pass --from DIR"
fi
for bin in vmms/vmms vmwp/vmwp cli/vmctl; do
  [[ -f "$from/$bin" && -x "$from/$bin" ]] ||
    die "$from/$bin is missing; run: bazel build //:binaries"
done

libexec="$prefix/libexec/hvstack"
unitdir="$prefix/lib/systemd/system"
root="${destdir%/}"

install -d -m 0755 "$root$libexec" "$root$prefix/bin" "$root$unitdir" \
  "$root$prefix/lib/sysusers.d" "$root$prefix/lib/tmpfiles.d"
install -m 0755 "$from/vmms/vmms" "$from/vmwp/vmwp" "$root$libexec/"
install -m 0755 "$from/cli/vmctl" "$root$prefix/bin/"
# The unit names /usr/libexec/hvstack; follow --prefix.
sed "s|/usr/libexec/hvstack|$libexec|g" "$DEPLOY/systemd/vmms.service" >"$root$unitdir/vmms.service"
chmod 0644 "$root$unitdir/vmms.service"
install -m 0644 "$DEPLOY/systemd/hvstack-sysusers.conf" "$root$prefix/lib/sysusers.d/hvstack.conf"
install -m 0644 "$DEPLOY/systemd/hvstack-tmpfiles.conf" "$root$prefix/lib/tmpfiles.d/hvstack.conf"
echo "install.sh: installed vmms, vmwp to ${root}${libexec}, vmctl to ${root}${prefix}/bin," \
  "vmms.service to ${root}${unitdir}"

if [[ -z "$root" ]]; then
  [[ $(id -u) -eq 0 ]] || die "installing into / needs root (or pass --destdir)"
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers "$prefix/lib/sysusers.d/hvstack.conf"
  else
    getent group hvstack >/dev/null || groupadd --system hvstack
  fi
  if command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --create "$prefix/lib/tmpfiles.d/hvstack.conf"
  else
    install -d -m 0750 -g hvstack /var/lib/hvstack /run/hvstack
  fi
  if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    echo "install.sh: start it with: systemctl enable --now vmms"
  else
    echo "install.sh: systemd is not running here; the unit is installed but not started"
  fi
fi
