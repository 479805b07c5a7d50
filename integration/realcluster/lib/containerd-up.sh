#!/usr/bin/env bash
# containerd-up.sh STATEDIR [OUTDIR]
# Starts containerd (built by build.sh into OUTDIR) with a private config/socket/state under STATEDIR:
#   STATEDIR/config.toml            generated containerd config (version 3, CRI, cgroupfs)
#   STATEDIR/run/containerd.sock    gRPC + CRI socket  (kubelet: unix://STATEDIR/run/containerd.sock)
#   STATEDIR/root, STATEDIR/state   containerd root/state; STATEDIR/cni/{net.d,ipam}; STATEDIR/runc (runc root)
#   STATEDIR/containerd.pid, STATEDIR/containerd.log, STATEDIR/crictl.yaml (CRI_CONFIG_FILE=that crictl ps)
# Network: a local bridge (default rn0, 10.88.0.1/16) created here; pods get 10.88.x.y with NO default
# route (no forwarding, no masquerade): pods reach only the bridge subnet and the host at 10.88.0.1.
# Then imports OUTDIR/images/*.tar into namespace k8s.io (IMPORT_IMAGES=0 to skip).
# Env: SNAPSHOTTER (overlayfs|native, default overlayfs), BRIDGE (rn0), POD_SUBNET (10.88.0.0/16),
#      BRIDGE_IP (10.88.0.1/16), SANDBOX_IMAGE (localhost/pause:3.10), LOG_LEVEL (info), RUNC_BINARY (OUTDIR/bin/runc),
#      RESTRICT_OOM (true|false; default true if CAP_SYS_RESOURCE is missing),
#      IMAGE_ALIASES ("SRC=DST ..." more names for imported images),
#      POD_ROUTES (space-separated CIDRs, e.g. "10.0.0.0/24": pods get a route for each via the bridge
#      address; for a Service range handled by kube-proxy on this host. Still no default route.)
set -euo pipefail
STATE=${1:?usage: containerd-up.sh STATEDIR [OUTDIR]}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd -P)
OUT=${2:-${REALNODE_OUT:-$(dirname "$STATE")/out}}
OUT=$(cd "$OUT" && pwd -P)
SNAPSHOTTER=${SNAPSHOTTER:-overlayfs}
BRIDGE=${BRIDGE:-rn0}
POD_SUBNET=${POD_SUBNET:-10.88.0.0/16}
BRIDGE_IP=${BRIDGE_IP:-10.88.0.1/16}
SANDBOX_IMAGE=${SANDBOX_IMAGE:-localhost/pause:3.10}
LOG_LEVEL=${LOG_LEVEL:-info}
RUNC_BINARY=${RUNC_BINARY:-$OUT/bin/runc}
# restrict_oom_score_adj: default true when this process lacks CAP_SYS_RESOURCE (bit 24)
if [ -z "${RESTRICT_OOM:-}" ]; then
  capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
  if (( (16#$capeff >> 24) & 1 )); then RESTRICT_OOM=false; else RESTRICT_OOM=true; fi
fi
POD_ROUTES=${POD_ROUTES:-}
SOCK="$STATE/run/containerd.sock"
routes_json=""
for r in $POD_ROUTES; do routes_json+="${routes_json:+, }{ \"dst\": \"$r\", \"gw\": \"${BRIDGE_IP%/*}\" }"; done

if [ -f "$STATE/containerd.pid" ] && kill -0 "$(cat "$STATE/containerd.pid")" 2>/dev/null; then
  echo "containerd already running (pid $(cat "$STATE/containerd.pid"))"; exit 0
fi
mkdir -p "$STATE/run" "$STATE/root" "$STATE/state" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/runc" "$STATE/opt"

# Nothing leaves the machine: every registry (the _default host) is a closed loopback port, so a
# pull of an image that was not imported fails at once (ErrImagePull), with no DNS query.
mkdir -p "$STATE/certs.d/_default"
cat > "$STATE/certs.d/_default/hosts.toml" <<EOF
server = "http://127.0.0.1:9"

[host."http://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF

# --- local bridge, owned by us (recorded so containerd-down.sh removes only what we created)
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
  echo "$BRIDGE" > "$STATE/bridge.created"
fi
[[ $(ip addr show dev "$BRIDGE") == *" ${BRIDGE_IP%/*}/"* ]] || ip addr add "$BRIDGE_IP" dev "$BRIDGE"  # no pipe: pipefail + grep -q can fail on SIGPIPE
ip link set "$BRIDGE" up

cat > "$STATE/cni/net.d/10-realnode.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "realnode",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{ "subnet": "$POD_SUBNET", "gateway": "${BRIDGE_IP%/*}" }]],
        "routes": [$routes_json]
      }
    }
  ]
}
EOF

cat > "$STATE/config.toml" <<EOF
version = 3
root = "$STATE/root"
state = "$STATE/state"

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = "$STATE/run/debug.sock"
  level = "$LOG_LEVEL"

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "$STATE/opt"

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "$SNAPSHOTTER"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$STATE/certs.d"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$SANDBOX_IMAGE"

  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    disable_apparmor = true
    # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (sandbox wants -998) ->
    # "failed to update /proc/self/oom_score_adj: Permission denied". Clamp to containerd's own value.
    restrict_oom_score_adj = $RESTRICT_OOM
    netns_mounts_under_state_dir = true
    enable_cdi = false
    # cgroup v1 is deprecated in containerd 2.2; keep the CRI status free of that condition
    ignore_deprecation_warnings = ["io.containerd.deprecation/cgroup-v1"]
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "$RUNC_BINARY"
          Root = "$STATE/runc"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$OUT/cni/bin"]
      conf_dir = "$STATE/cni/net.d"
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
EOF

printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$SOCK" "$SOCK" > "$STATE/crictl.yaml"

# shim + runc must be found; keep the rest of PATH
export PATH="$OUT/bin:$PATH"
nohup "$OUT/bin/containerd" --config "$STATE/config.toml" >>"$STATE/containerd.log" 2>&1 &
echo $! > "$STATE/containerd.pid"
for _ in $(seq 1 60); do
  if [ -S "$SOCK" ] && "$OUT/bin/ctr" --address "$SOCK" version >/dev/null 2>&1; then break; fi
  kill -0 "$(cat "$STATE/containerd.pid")" 2>/dev/null || { echo "containerd died; log:"; tail -30 "$STATE/containerd.log"; exit 1; }
  sleep 0.5
done
"$OUT/bin/ctr" --address "$SOCK" version
echo "containerd pid $(cat "$STATE/containerd.pid"), socket unix://$SOCK"

if [ "${IMPORT_IMAGES:-1}" = 1 ] && ls "$OUT"/images/*.tar >/dev/null 2>&1; then
  for t in "$OUT"/images/*.tar; do
    "$OUT/bin/ctr" --address "$SOCK" -n k8s.io images import --snapshotter "$SNAPSHOTTER" "$t"
  done
fi
# IMAGE_ALIASES="SRC=DST ...": more names for imported images (e.g. the names tests use).
for a in ${IMAGE_ALIASES:-}; do
  "$OUT/bin/ctr" --address "$SOCK" -n k8s.io images tag --force "${a%%=*}" "${a#*=}" >/dev/null
done
"$OUT/bin/ctr" --address "$SOCK" -n k8s.io images ls -q | grep -v '^sha256:'
