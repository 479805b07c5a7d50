#!/usr/bin/env bash
# Runs INSIDE the VM as root, at boot (vmtest.service). $1: the results directory.
# Stages (the `stages` file next to this script; empty: all): each writes <stage>.out and
# <stage>.rc (0 = passed). alice's commands run through `su -l alice`, which opens a logind
# session (session-N.scope, XDG_RUNTIME_DIR, the user bus): where an ssh or console login is.
set -u
OUT=${1:?results directory}
HERE=$(cd "$(dirname "$0")" && pwd)
P=/home/alice/project
CGROUP_TESTS="tests/localcluster/test_cgroups.py tests/localcluster/test_kubelet.py tests/localcluster/test_cluster.py tests/localcluster/test_kubelet_resize.py"
STAGES=$(cat "$HERE/stages" 2>/dev/null)
STAGES=${STAGES:-"tests_alice tests_root demo_alice"}
mkdir -p "$OUT"

sec() { echo "===== $* [$(date +%T), uptime $(cut -d' ' -f1 /proc/uptime)s]"; }
as_alice() { su -l alice -c "$1"; }

# This checkout's files replace the image's copy; the venv (an editable install) stays.
refresh_project() {
    find "$P" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    tar -C "$P" -xf "$HERE/project.tar" && chown -R alice:alice "$P"
}

facts() {
    sec facts
    uname -r; systemctl --version | head -1
    echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup); controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
    # shellcheck disable=SC2016  # expanded by alice's shell
    as_alice 'echo "alice: $(id -u), cgroup $(cat /proc/self/cgroup), XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"'
}

# Nothing of ours may survive a stage: no cgroup, no process, no temporary directory, and no
# /app (ZenML's image working directory, which a step pod here must not make on the host).
leftovers() {
    local found
    found=$(
        ls -d /app 2>/dev/null
        find /sys/fs/cgroup -name 'zenml-oom*' 2>/dev/null
        pgrep -a -f 'python|sleep|spawner' || true
        find /tmp /var/tmp -maxdepth 1 -name 'zenml-oom*' 2>/dev/null
    )
    if [ -n "$found" ]; then echo "LEFT BEHIND:"; echo "$found"; return 1; fi
    echo "nothing left behind"
}

# The tests that touch cgroups; a skip for want of cgroups is a failure here.
tests() {  # $1: alice | root
    local cmd="cd $P && timeout 1200 bash scripts/test $CGROUP_TESTS"
    if [ "$1" = alice ]; then as_alice "$cmd"; else PYTHONDONTWRITEBYTECODE=1 bash -c "$cmd"; fi
    local rc=$?
    if grep -q -E "^SKIPPED.*no memory cgroups" "$OUT/tests_$1.out"; then echo "FAILED: a test was skipped for want of cgroups"; rc=1; fi
    return $rc
}

# The README's first command: real OOM kills, escalated to success. $1: alice | root.
demo() {
    local cmd="cd $P && timeout 1500 .venv/bin/zenml-oom demo"
    # The pods' logs, copied out while the demo runs (it removes its directory at the end).
    # The loop ends by itself (a killed one left its `sleep` behind for the leftovers check).
    local logs="$OUT/demo_$1.podlogs"
    mkdir -p "$logs"
    (while [ ! -e "$logs.done" ]; do cp -r /tmp/zenml-oom-demo-*/cluster/kubelet-*/logs/. "$logs/" 2>/dev/null; sleep 2; done) &
    local copier=$!
    if [ "$1" = alice ]; then as_alice "$cmd"; else PYTHONDONTWRITEBYTECODE=1 bash -c "$cmd"; fi
    local rc=$?
    touch "$logs.done" && wait "$copier"
    grep -q 'OOMKilled' "$OUT/demo_$1.out" || { echo "no OOMKilled attempt in the demo"; rc=1; }
    grep -q 'ended COMPLETED' "$OUT/demo_$1.out" || { echo "the demo's run did not complete"; rc=1; }
    return $rc
}

# The demo stopped with SIGTERM while its first attempt pod runs (integration/test_demo.py):
# the leftovers check after the stage then covers the failure path. $1: alice | root.
demo_stopped() {
    local cmd="cd $P && timeout 1200 bash scripts/test integration/test_demo.py -k sigterm"
    if [ "$1" = alice ]; then as_alice "$cmd"; else PYTHONDONTWRITEBYTECODE=1 bash -c "$cmd"; fi
}

refresh_project
facts >"$OUT/facts.out" 2>&1
cat "$OUT/facts.out"
for s in $STAGES; do
    sec "$s"
    start=$(date +%s)
    dmesg -C
    case $s in
        tests_alice) tests alice ;;
        tests_root) tests root ;;
        demo_alice) demo alice ;;
        demo_root) demo root ;;
        stop_alice) demo_stopped alice ;;
        stop_root) demo_stopped root ;;
        *) echo "unknown stage $s"; false ;;
    esac >"$OUT/$s.out" 2>&1
    rc=$?
    { echo "-- kernel OOM kills:"; dmesg | grep -c 'Memory cgroup out of memory'; leftovers; } >>"$OUT/$s.out" 2>&1 || rc=1
    echo "$rc" >"$OUT/$s.rc"
    tail -15 "$OUT/$s.out"
    echo "$s: exit $rc in $(($(date +%s) - start))s" | tee -a "$OUT/summary"
    sync
done
sec "all stages done"
