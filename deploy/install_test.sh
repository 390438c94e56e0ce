#!/usr/bin/env bash
# deploy/install.sh into a temporary DESTDIR, then the installed files checked with systemd's own
# tools: `systemd-analyze verify` on the installed vmms.service (no warning allowed),
# systemd-sysusers and systemd-tmpfiles on the installed entries, all with --root (nothing on this
# machine is touched).
set -euo pipefail

RUNFILES="${TEST_SRCDIR:?run me with bazel test}/hvstack"
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not found; install the Debian package 'systemd' (deploy/install-deps.sh)"
  exit 0
fi

root="${TEST_TMPDIR:?}/root"
rm -rf "$root"
"$RUNFILES/deploy/install.sh" --from "$RUNFILES" --destdir "$root"

for f in usr/libexec/hvstack/vmms usr/libexec/hvstack/vmwp usr/bin/vmctl; do
  [[ -x "$root/$f" ]] || fail "$f not installed as an executable"
done
for f in usr/lib/systemd/system/vmms.service usr/lib/sysusers.d/hvstack.conf \
  usr/lib/tmpfiles.d/hvstack.conf; do
  [[ -f "$root/$f" ]] || fail "$f not installed"
done
"$root/usr/libexec/hvstack/vmms" --help | grep -q -- --keep-workers-on-exit ||
  fail "installed vmms has no --keep-workers-on-exit"

unit="$root/usr/lib/systemd/system/vmms.service"
grep -qx 'Type=notify' "$unit" || fail "vmms.service is not Type=notify"
grep -qx 'KillMode=process' "$unit" || fail "vmms.service does not keep workers on stop"
grep -q '^ExecStart=/usr/libexec/hvstack/vmms .*--state-dir /var/lib/hvstack' "$unit" ||
  fail "unexpected ExecStart: $(grep ExecStart "$unit")"
grep -q -- '--keep-workers-on-exit' "$unit" || fail "ExecStart lacks --keep-workers-on-exit"
grep -q -- '--socket-group hvstack' "$unit" || fail "ExecStart lacks --socket-group hvstack"
grep -q -- '--readonly-socket /run/hvstack/vmms-ro.sock' "$unit" ||
  fail "ExecStart lacks the read-only socket"
for flag in --socket-group --readonly-socket --tls-listen --tls-cert --tls-key --tls-client-ca; do
  "$root/usr/libexec/hvstack/vmms" --help | grep -q -- "$flag" || fail "installed vmms has no $flag"
done
# The installed vmms accepts the unit's ExecStart arguments (paths moved into the test's
# directory). Past parsing it either serves (the hvstack group exists here) until `timeout`
# stops it, or stops at the missing group; a flag it does not know would be CLI11's parse error.
# A short directory: a unix socket path is at most 107 bytes, and Bazel's TEST_TMPDIR under the
# default output base is longer than that.
short=$(mktemp -d /tmp/hvstack-install-test.XXXXXX)
trap 'rm -rf "$short"' EXIT
execstart=$(sed -n 's/^ExecStart=\/usr\/libexec\/hvstack\/vmms //p' "$unit")
execstart=${execstart//\/var\/lib\/hvstack/$short/state}
execstart=${execstart//\/run\/hvstack/$short}
# shellcheck disable=SC2086
out=$(timeout 3 "$root/usr/libexec/hvstack/vmms" $execstart 2>&1) || true
if grep -q -- "--help for more information" <<<"$out"; then
  fail "vmms rejects the unit's arguments ($execstart): $out"
fi
grep -Eq "serving on unix:|--socket-group hvstack: no such group" <<<"$out" ||
  fail "vmms with the unit's arguments did neither serve nor name the missing group: $out"
if grep -Eq '^(PrivateDevices=yes|DevicePolicy=strict)' "$unit"; then
  fail "vmms.service hides /dev/kvm"
fi

# `systemd-analyze verify --root` resolves the unit's dependencies (sysinit.target, ...) inside the
# root: give it this machine's unit files, under ours.
cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
out=$(systemd-analyze verify --root="$root" /usr/lib/systemd/system/vmms.service 2>&1) ||
  fail "systemd-analyze verify failed:
$out"
[[ -z "$out" ]] || fail "systemd-analyze verify warned:
$out"
echo "systemd-analyze verify: vmms.service ok"

# sysusers.d: the hvstack group is created in the root's /etc/group.
mkdir -p "$root/etc"
touch "$root/etc/passwd" "$root/etc/group" "$root/etc/shadow" "$root/etc/gshadow"
systemd-sysusers --root="$root" || fail "systemd-sysusers rejected hvstack.conf"
gid=$(awk -F: '$1 == "hvstack" { print $3 }' "$root/etc/group")
[[ -n "$gid" ]] || fail "no hvstack group after systemd-sysusers"

# tmpfiles.d: /var/lib/hvstack and /run/hvstack, 0750, group hvstack; the socket link.
systemd-tmpfiles --root="$root" --create "$root/usr/lib/tmpfiles.d/hvstack.conf" ||
  fail "systemd-tmpfiles rejected hvstack.conf"
for d in var/lib/hvstack:750 run/hvstack:755; do
  [[ "$(stat -c '%a %g' "$root/${d%:*}")" == "${d#*:} $gid" ]] ||
    fail "${d%:*} is $(stat -c '%a %g' "$root/${d%:*}"), want ${d#*:} $gid"
done
[[ "$(readlink "$root/run/hvstack/vmms.sock")" == /var/lib/hvstack/vmms.sock ]] ||
  fail "run/hvstack/vmms.sock does not point at the state directory's socket"

# --prefix moves the unit's paths with the binaries.
"$RUNFILES/deploy/install.sh" --from "$RUNFILES" --destdir "$root/p" --prefix /opt/hvstack
grep -q '^ExecStart=/opt/hvstack/libexec/hvstack/vmms ' \
  "$root/p/opt/hvstack/lib/systemd/system/vmms.service" || fail "--prefix not applied to the unit"
[[ -x "$root/p/opt/hvstack/bin/vmctl" ]] || fail "--prefix: vmctl not in PREFIX/bin"

echo "PASS"
