#!/usr/bin/env bash
# Runs INSIDE the VM as root, at boot (vmtest.service). $1: the results directory.
# Stages (the `stages` file next to this script; empty: all): each writes <stage>.out and
# <stage>.rc (0 = passed). alice's commands run through `su -l alice`, which opens a logind
# session (session-N.scope, XDG_RUNTIME_DIR, the user bus): where an ssh or console login is.
set -u
OUT=${1:?results directory}
HERE=$(cd "$(dirname "$0")" && pwd)
P=/home/alice/project
CGROUP_TESTS="tests/localcluster/test_cgroups.py tests/localcluster/test_kubelet.py tests/localcluster/test_cluster.py tests/localcluster/test_kubelet_resize.py tests/supervisor/test_sup_nearlimit.py"
STAGES=$(cat "$HERE/stages" 2>/dev/null)
STAGES=${STAGES:-"tests_alice tests_root demo_alice"}
mkdir -p "$OUT"

sec() { echo "===== $* [$(date +%T), uptime $(cut -d' ' -f1 /proc/uptime)s]"; }
# Each line of a stage's output gets the time it arrived (where the minutes go under TCG).
stamp() { while IFS= read -r line || [ -n "$line" ]; do printf '%(%T)T %s\n' -1 "$line"; done; }
as_alice() { su -l alice -c "$1"; }

# This checkout's files replace the image's copy; the venv (an editable install) stays. Their
# bytecode is compiled once here, as the owner: otherwise root's stages (which must not write
# root-owned caches into alice's tree: PYTHONDONTWRITEBYTECODE) compile the project again in
# every process, the demo's pods included, and under TCG that costs seconds per process.
refresh_project() {
    find "$P" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    tar -C "$P" -xf "$HERE/project.tar" && chown -R alice:alice "$P"
    local start=$SECONDS
    runuser -u alice -- "$P/.venv/bin/python" -m compileall -q -j 0 \
        "$P/zenml_oom_orchestrator" "$P/examples" "$P/tests" "$P/integration"
    echo "project refreshed, bytecode compiled in $((SECONDS - start))s"
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

# $2 as $1 (alice | root); root writes no bytecode into alice's tree (refresh_project made it).
as_user() {
    if [ "$1" = alice ]; then as_alice "$2"; else PYTHONDONTWRITEBYTECODE=1 bash -c "$2"; fi
}

# The tests that touch cgroups (a skip for want of cgroups fails the stage: see verdict).
tests() {  # $1: alice | root
    as_user "$1" "cd $P && timeout 1200 bash scripts/test $CGROUP_TESTS"
}

# The README's first command: real OOM kills, escalated to success (see verdict). $1: alice | root.
demo() {
    # The pods' logs and the pipeline's own output, copied out while the demo runs (it removes
    # its directory at the end). The loop ends by itself (a killed one left its `sleep` behind
    # for the leftovers check).
    local logs="$OUT/demo_$1.podlogs"
    mkdir -p "$logs"
    (while [ ! -e "$logs.done" ]; do
        cp -r /tmp/zenml-oom-demo-*/cluster/kubelet-*/logs/. "$logs/" 2>/dev/null
        cp /tmp/zenml-oom-demo-*/pipeline.log "$logs/" 2>/dev/null
        sleep 2
    done) &
    local copier=$!
    as_user "$1" "cd $P && timeout 1500 .venv/bin/zenml-oom demo"
    local rc=$?
    touch "$logs.done" && wait "$copier"
    return $rc
}

# The demo stopped with SIGTERM while its first attempt pod runs (integration/test_demo.py):
# the leftovers check after the stage then covers the failure path. $1: alice | root.
demo_stopped() {
    as_user "$1" "cd $P && timeout 1200 bash scripts/test integration/test_demo.py -k sigterm"
}

# What a stage's complete output must (not) say. $1: stage; $2: its output (time-stamped lines).
verdict() {
    case $1 in
        tests_*) if grep -q -E "^[0-9:]+ SKIPPED.*no memory cgroups" "$2"; then
            echo "FAILED: a test was skipped for want of cgroups"; return 1; fi ;;
        demo_*)
            grep -q 'OOMKilled' "$2" || { echo "no OOMKilled attempt in the demo"; return 1; }
            grep -q 'ended COMPLETED' "$2" || { echo "the demo's run did not complete"; return 1; } ;;
    esac
}

sec refresh_project
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
    esac 2>&1 | stamp >"$OUT/$s.out"
    rc=${PIPESTATUS[0]}
    note=$(verdict "$s" "$OUT/$s.out") || rc=1
    {
        [ -z "$note" ] || echo "$note"
        echo "-- kernel OOM kills:"; dmesg | grep -c 'Memory cgroup out of memory'
        leftovers || rc=1
    } >>"$OUT/$s.out" 2>&1
    echo "$rc" >"$OUT/$s.rc"
    tail -15 "$OUT/$s.out"
    echo "$s: exit $rc in $(($(date +%s) - start))s" | tee -a "$OUT/summary"
    sync
done
sec "all stages done"
