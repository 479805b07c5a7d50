#!/usr/bin/env bash
# Build the cgroup v2 tier's VM disk: Debian 12 (systemd 252, kernel 6.1, unified cgroup v2),
# a normal user `alice` (uid 1000, lingering) and the project in /home/alice/project with its
# venv made as the README says. The project's source is replaced at every run (run-vm.sh), so
# the image only depends on this script and pyproject.toml (run.sh caches it on their hash).
#
#   PROJECT=/path/to/checkout OUT=/var/cache/zenml-oom/cgroupv2/<key> bash build-image.sh
#
# Result: $OUT/disk.raw (ext4, root=/dev/vda), $OUT/vmlinuz, $OUT/initrd.img. Root only (chroot,
# mounts); needs debootstrap and the Debian and Python package indexes. The VM has no network.
set -euo pipefail
PROJECT=${PROJECT:?set PROJECT to the project checkout}
OUT=${OUT:?set OUT to the image directory}
SIZE=${SIZE:-8G}
SUITE=${SUITE:-bookworm}
# The Debian mirror this host's apt already uses (deb822 or one-line sources).
host_mirror() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
        grep -o -E 'https?://[^ ]+/debian/?([[:space:]]|$)' | head -1 | tr -d '[:space:]'
    true  # head closes the pipe early
}
MIRROR=${MIRROR:-}
[ -n "$MIRROR" ] || MIRROR=$(host_mirror)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,udev,linux-image-amd64,python3,python3-venv,python3-pip,ca-certificates,procps,kmod,git

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/zenml-oom-cgv2-build-XXXXXX")
ROOTFS=$BUILD/rootfs
MOUNTED=()
cleanup() {
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}"
    done
    MOUNTED=()
    rm -rf "$BUILD" "$OUT.tmp"
}
trap cleanup EXIT

t0=$(date +%s)
echo "== debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$BUILD/debootstrap.log" 2>&1 ||
    { tail -30 "$BUILD/debootstrap.log"; exit 1; }
echo "== debootstrap: $(($(date +%s) - t0))s"
for d in proc sys dev dev/pts; do
    mount --bind "/$d" "$ROOTFS/$d"
    MOUNTED+=("$ROOTFS/$d")
done
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

echo "== system configuration"
echo cgv2vm >"$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 cgv2vm\n' >"$ROOTFS/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$ROOTFS/etc/fstab"
in_root sh -c 'useradd -m -u 1000 -s /bin/bash alice'
# Lingering: alice's user manager (user@1000.service) starts at boot (`loginctl enable-linger`).
mkdir -p "$ROOTFS/var/lib/systemd/linger" && touch "$ROOTFS/var/lib/systemd/linger/alice"
# The test hook: mount /dev/vdb, run its vmtest.sh as root, unmount, power off.
cat >"$ROOTFS/usr/local/sbin/vmtest-boot" <<'HOOK'
#!/bin/sh
mkdir -p /mnt/io
mount /dev/vdb /mnt/io || { systemctl poweroff; exit 0; }
mkdir -p /mnt/io/results
bash /mnt/io/vmtest.sh /mnt/io/results 2>&1 | tee /mnt/io/results/vmtest.log >/dev/ttyS0
sync
umount /mnt/io
systemctl poweroff
HOOK
chmod 755 "$ROOTFS/usr/local/sbin/vmtest-boot"
cat >"$ROOTFS/etc/systemd/system/vmtest.service" <<'UNIT'
[Unit]
Description=Run vmtest.sh from the 2nd disk
After=multi-user.target systemd-logind.service user@1000.service
[Service]
Type=simple
ExecStart=/usr/local/sbin/vmtest-boot
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/vmtest.service "$ROOTFS/etc/systemd/system/multi-user.target.wants/vmtest.service"

echo "== the project's files into /home/alice/project, venv as alice as the README says"
mkdir -p "$ROOTFS/home/alice/project"
git -C "$PROJECT" ls-files -z --cached --others --exclude-standard |
    tar -C "$PROJECT" --null -T - --ignore-failed-read -cf - | tar -C "$ROOTFS/home/alice/project" -xf -
in_root chown -R alice:alice /home/alice/project
t1=$(date +%s)
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# A host that reaches the package index through a TLS-inspecting proxy needs its CA bundle.
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOTFS/tmp/host-ca.crt"
in_root runuser -u alice -- /usr/bin/env -i PATH=/usr/bin:/bin HOME=/home/alice LANG=C.UTF-8 \
    PIP_CERT=/tmp/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    bash -c "cd /home/alice/project && python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'"
echo "== venv: $(($(date +%s) - t1))s"
rm -f "$ROOTFS/tmp/host-ca.crt" "$ROOTFS/etc/resolv.conf"
rm -rf "$ROOTFS/home/alice/.cache" "$ROOTFS/root/.cache"
in_root apt-get clean
for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount "${MOUNTED[i]}" || umount -l "${MOUNTED[i]}"; done
MOUNTED=()

echo "== kernel, initrd, ext4 image ($SIZE)"
mkdir -p "$OUT.tmp"
cp "$(find "$ROOTFS/boot" -name 'vmlinuz-*' | sort | tail -1)" "$OUT.tmp/vmlinuz"
cp "$(find "$ROOTFS/boot" -name 'initrd.img-*' | sort | tail -1)" "$OUT.tmp/initrd.img"
mkfs.ext4 -q -F -L cgv2vm -d "$ROOTFS" "$OUT.tmp/disk.raw" "$SIZE"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"  # only a complete image counts as cached
echo "== image built in $(($(date +%s) - t0))s: $OUT"
