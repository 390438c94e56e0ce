#!/usr/bin/env bash
# Builds an initramfs with make_initramfs.sh and checks what a kernel will find in it.
set -euo pipefail

script="${TEST_SRCDIR:-.}/hvstack/tests/linux/make_initramfs.sh"
[[ -f $script ]] || script="$(dirname "$0")/make_initramfs.sh"
tmp=${TEST_TMPDIR:-$(mktemp -d)}
fail() { echo "FAIL: $*" >&2; exit 1; }

for tool in busybox cpio gzip file; do
  if ! command -v "$tool" >/dev/null && [[ ! -x /bin/$tool ]]; then
    echo "SKIP: $tool not installed (deploy/install-deps.sh installs busybox-static and cpio)"
    exit 0
  fi
done

"$script" "$tmp/initrd.gz" TEST-MARKER-42
file "$tmp/initrd.gz" | grep -q "gzip compressed data" || fail "not gzip: $(file "$tmp/initrd.gz")"

listing=$(gzip -dc "$tmp/initrd.gz" | cpio -tv --quiet)
grep -Eq '^c.* 5, +1 .* dev/console$' <<<"$listing" || fail "no /dev/console (5,1) node"
grep -Eq '^-rwx.* init$' <<<"$listing" || fail "no executable /init"
grep -Eq ' bin/sh -> busybox$' <<<"$listing" || fail "no bin/sh -> busybox"
grep -Eq ' bin/poweroff -> busybox$' <<<"$listing" || fail "no bin/poweroff"

mkdir -p "$tmp/x"
(cd "$tmp/x" && gzip -dc "$tmp/initrd.gz" | cpio -id --quiet --no-absolute-filenames 2>/dev/null) || true
grep -qx 'echo "TEST-MARKER-42"' "$tmp/x/init" || fail "/init does not print the marker"
grep -qx 'poweroff -f' "$tmp/x/init" || fail "/init does not power off"
grep -qx 'mount -t devtmpfs devtmpfs /dev' "$tmp/x/init" || fail "/init does not mount /dev"
file "$tmp/x/bin/busybox" | grep -q "statically linked" || fail "busybox is not static"

# Same inputs, same bytes.
"$script" "$tmp/initrd2.gz" TEST-MARKER-42
cmp -s "$tmp/initrd.gz" "$tmp/initrd2.gz" || fail "output is not reproducible"

# Plain cpio (the test kernel has no decompressor), with --run lines and an extra file.
echo hello >"$tmp/extra.txt"
"$script" --uncompressed --run 'echo RUN-LINE-1' --file "$tmp/extra.txt:etc/extra.txt" \
  "$tmp/initrd.cpio" PLAIN-MARKER
file "$tmp/initrd.cpio" | grep -q "cpio archive" || fail "not a plain cpio: $(file "$tmp/initrd.cpio")"
plain=$(cpio -tv --quiet <"$tmp/initrd.cpio")
grep -Eq '^c.* 5, +1 .* dev/console$' <<<"$plain" || fail "plain: no /dev/console (5,1) node"
grep -Eq ' etc/extra.txt$' <<<"$plain" || fail "plain: --file not copied"
mkdir -p "$tmp/p"
(cd "$tmp/p" && cpio -id --quiet --no-absolute-filenames <"$tmp/initrd.cpio" 2>/dev/null) || true
grep -qx 'echo RUN-LINE-1' "$tmp/p/init" || fail "--run line missing from /init"
grep -qx 'echo "PLAIN-MARKER"' "$tmp/p/init" || fail "plain: /init does not print the marker"

# Our own /init and no busybox.
printf '#!/bin/true\n' >"$tmp/own-init"
chmod 755 "$tmp/own-init"
"$script" --uncompressed --no-busybox --init "$tmp/own-init" "$tmp/own.cpio"
own=$(cpio -tv --quiet <"$tmp/own.cpio")
grep -Eq '^-rwx.* init$' <<<"$own" || fail "--init: no executable /init"
if grep -q busybox <<<"$own"; then fail "--no-busybox still holds busybox"; fi
if "$script" --no-busybox "$tmp/none.cpio" 2>/dev/null; then fail "--no-busybox without --init accepted"; fi

# A marker that would break /init is refused.
if "$script" "$tmp/bad.gz" 'x"; reboot; "' 2>/dev/null; then fail "accepted a quoting marker"; fi
echo PASS
