#!/usr/bin/env bash
# Boot the image from build-image.sh with no network, on a throw-away overlay (the cached image
# is never written). vmtest.sh and this checkout's files go in on a fresh 2nd disk; vmtest.sh
# runs at boot, the VM powers off, and the 2nd disk's results/ is copied to $RESULTS.
#
#   IMAGE=/var/cache/zenml-oom/cgroupv2/<key> RESULTS=/tmp/out bash run-vm.sh [stage...]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
IMAGE=${IMAGE:?set IMAGE to the directory build-image.sh made}
RESULTS=${RESULTS:?set RESULTS to where the results go}
ACCEL=${ACCEL:-auto}  # kvm | tcg | auto
MEM=${MEM:-6G}
SMP=${SMP:-2}
VM_TIMEOUT=${VM_TIMEOUT:-2400}

if [ "$ACCEL" = auto ]; then
    # /dev/kvm can open and still not run a guest (no nested virtualization): try a boot.
    ACCEL=tcg
    if [ -w /dev/kvm ] && timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 512 -nic none \
        -display none -serial stdio -monitor none -no-reboot -kernel "$IMAGE/vmlinuz" \
        -append "console=ttyS0 panic=-1" 2>&1 | grep -q -m1 'Linux version'; then
        ACCEL=kvm
    fi
fi
case $ACCEL in
    kvm) accel=(-accel kvm -cpu host) ;;
    tcg) accel=(-accel "tcg,thread=multi" -cpu max) ;;
    *) echo "ACCEL must be kvm, tcg or auto" >&2; exit 2 ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/zenml-oom-cgv2-run-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/io" "$RESULTS"
cp "$HERE/vmtest.sh" "$WORK/io/"
echo "$*" >"$WORK/io/stages"
git -C "$PROJECT" ls-files -z --cached --others --exclude-standard |
    tar -C "$PROJECT" --null -T - --ignore-failed-read -cf "$WORK/io/project.tar"
truncate -s 1G "$WORK/io.img" && mkfs.ext4 -q -F -d "$WORK/io" "$WORK/io.img"
qemu-img create -q -f qcow2 -F raw -b "$IMAGE/disk.raw" "$WORK/overlay.qcow2"

echo "== VM ($ACCEL, $SMP CPUs, $MEM): stages ${*:-all}; console: $RESULTS/console.log"
start=$(date +%s)
timeout "$VM_TIMEOUT" qemu-system-x86_64 "${accel[@]}" -m "$MEM" -smp "$SMP" \
    -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1" \
    -drive file="$WORK/overlay.qcow2",format=qcow2,if=virtio \
    -drive file="$WORK/io.img",format=raw,if=virtio \
    -nic none -display none -monitor none -no-reboot \
    -serial file:"$RESULTS/console.log" || echo "qemu exited with $? (124: timeout after ${VM_TIMEOUT}s)"
echo "== VM ran $(($(date +%s) - start))s"
e2fsck -fy "$WORK/io.img" >/dev/null 2>&1 || true  # replays the journal if the VM was killed
debugfs -R "rdump /results $WORK" "$WORK/io.img" 2>/dev/null
cp -a "$WORK/results/." "$RESULTS/" 2>/dev/null || echo "the VM wrote no results"
