#!/usr/bin/env bash
# The cgroup v2 tier: the tests that touch cgroups and the README's demo, as a normal user in a
# login session (the systemd user scope) and as root (cgroup v2 directly), in a Debian 12 VM
# (systemd 252, kernel 6.1, unified cgroup v2) under qemu. Fails on any failure, on a skip for
# want of cgroups, and on anything left behind (cgroup, process, temp dir).
#
#   bash integration/cgroupv2/run.sh                  # tests_alice tests_root demo_alice demo_root
#   bash integration/cgroupv2/run.sh tests_alice      # some of them
#   bash integration/cgroupv2/run.sh stop_alice stop_root   # on request only: the demo stopped
#       by SIGTERM mid-run (integration/test_demo.py), i.e. its cleanup, as each user
#   bash integration/cgroupv2/run.sh --image-only     # build or reuse the image, run nothing
#
# Root only (debootstrap, chroot). The image (~5 min to build) is cached in $CACHE, keyed on
# build-image.sh and pyproject.toml; the checkout's files go into the VM at every run. Under
# TCG (no usable KVM) the boot takes about a minute, the test stages 2 to 4 min each and the
# demo stages about 10 min each (README, "Run the tests", has dated figures). Each stage's
# output, time-stamped line by line, is in $RESULTS/<stage>.out.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${CACHE:-/var/cache/zenml-oom/cgroupv2}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/zenml-oom-cgroupv2-results}
IMAGE_ONLY=false
if [ "${1:-}" = --image-only ]; then IMAGE_ONLY=true; shift; fi
STAGES=${*:-tests_alice tests_root demo_alice demo_root}
# The VM's own limit: boot and setup, plus each stage's limit in vmtest.sh.
vm_timeout=300
for stage in $STAGES; do
    case $stage in demo_*) vm_timeout=$((vm_timeout + 1560)) ;; *) vm_timeout=$((vm_timeout + 1260)) ;; esac
done
export VM_TIMEOUT=${VM_TIMEOUT:-$vm_timeout}
[ "$(id -u)" = 0 ] || { echo "run.sh needs root (debootstrap, chroot, mounts)" >&2; exit 2; }

packages=()
command -v qemu-system-x86_64 >/dev/null || packages+=(qemu-system-x86)
command -v qemu-img >/dev/null || packages+=(qemu-utils)
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v debugfs >/dev/null || packages+=(e2fsprogs)
if [ ${#packages[@]} -gt 0 ]; then
    echo "== apt-get install ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

key=$(cat "$HERE/build-image.sh" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
IMAGE=$CACHE/$key
if [ ! -f "$IMAGE/disk.raw" ]; then
    mkdir -p "$CACHE"
    find "$CACHE" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +  # older images
    PROJECT=$ROOT OUT=$IMAGE bash "$HERE/build-image.sh"
fi
echo "== image $IMAGE"
[ "$IMAGE_ONLY" = false ] || exit 0
rm -rf "$RESULTS"
# shellcheck disable=SC2086  # one word per stage
IMAGE=$IMAGE RESULTS=$RESULTS bash "$HERE/run-vm.sh" $STAGES

failed=0
for stage in $STAGES; do
    rc=$(cat "$RESULTS/$stage.rc" 2>/dev/null || echo "none (the VM did not finish it)")
    if [ "$rc" != 0 ]; then
        failed=1
        echo "== FAILED: $stage: exit $rc; the end of $RESULTS/$stage.out:"
        tail -60 "$RESULTS/$stage.out" 2>/dev/null || tail -30 "$RESULTS/console.log"
    fi
done
cat "$RESULTS/summary" 2>/dev/null || true
[ $failed = 0 ] && echo "== cgroup v2 tier passed" || echo "== cgroup v2 tier FAILED (results: $RESULTS)"
exit $failed
