#!/usr/bin/env bash
# The cgroup v2 tier: the tests that touch cgroups as a normal user in a login session (the
# systemd user scope) and as root (cgroup v2 directly), and the README's demo as that user, in
# a Debian 12 VM (systemd 252, kernel 6.1, unified cgroup v2) under qemu. Fails on any failure,
# on a skip for want of cgroups, and on anything left behind (cgroup, process, temp dir).
#
#   bash integration/cgroupv2/run.sh                    # all stages: tests_alice tests_root demo_alice
#   bash integration/cgroupv2/run.sh tests_alice        # some of them
#   bash integration/cgroupv2/run.sh demo_root stop_alice stop_root   # on request only: the
#       demo as root, and the demo stopped by SIGTERM mid-run (its cleanup) as each user
#
# Root only (debootstrap, chroot). The image (~5 min to build) is cached in $CACHE, keyed on
# build-image.sh and pyproject.toml; the checkout's files go into the VM at every run. Under
# TCG (no usable KVM) the three stages take about 10 minutes. Results: $RESULTS.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${CACHE:-/var/cache/zenml-oom/cgroupv2}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/zenml-oom-cgroupv2-results}
STAGES=${*:-tests_alice tests_root demo_alice}
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
