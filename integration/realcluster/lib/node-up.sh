#!/usr/bin/env bash
# node-up.sh STATEDIR [NODEOUT] — add a real node to the control plane of up.sh STATEDIR:
# containerd (realnode/containerd-up.sh, state in STATEDIR/containerd) + kubelet v1.35.
# NODEOUT: the realnode build dir (containerd, runc, CNI plugins, crictl, images/*.tar);
# default $REALNODE_OUT. It is recorded in STATEDIR/node.out for node-down.sh.
# Writes STATEDIR/kubelet/{config.yaml,root,pod-logs,sysctl.orig}, log STATEDIR/logs/kubelet.log,
# pid STATEDIR/pids/kubelet.pid; containerd: STATEDIR/containerd/{containerd.pid,containerd.log,...}.
# Every process started here carries REALK8S_STATEDIR=STATEDIR in its environment (like up.sh).
# Kubelet: node name $NODE_NAME (default realk8s-node: the identity in STATEDIR/kubelet.kubeconfig),
# node IP = the rn0 bridge address (10.88.0.1; the kubelet refuses a loopback node IP), serving and
# healthz on 127.0.0.1 only (10250 / 10248), webhook authn/authz against the apiserver.
# KUBE_PROXY=1 (all-up.sh sets it): also the pod-network pieces a real node has, so that pods can
# use in-cluster config (the `kubernetes` Service 10.0.0.1:443): kube-proxy v1.35 (iptables mode,
# user system:kube-proxy, STATEDIR/kube-proxy/config.yaml, pid STATEDIR/pids/kube-proxy.pid), a pod
# route for SERVICE_CIDR (10.0.0.0/24) via the bridge address (still no default route, ip_forward
# untouched), and the kubelet serving on the node IP (KUBELET_ADDRESS) so kubectl logs/exec work.
# Needs the apiserver on a non-loopback address (up.sh with API_ADDR=10.88.0.1).
# Stop with node-down.sh STATEDIR (or all-down.sh STATEDIR).
set -euo pipefail

STATEDIR=${1:?usage: node-up.sh STATEDIR [NODEOUT]}
STATEDIR=$(cd "$STATEDIR" && pwd -P)
NODEOUT=${2:-${REALNODE_OUT:?usage: node-up.sh STATEDIR NODEOUT (or set REALNODE_OUT)}}
NODEOUT=$(cd "$NODEOUT" && pwd -P)
BIN=${BIN_DIR:-$STATEDIR/../bin}
BIN=$(cd "$BIN" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
REALNODE=$HERE   # containerd-up.sh / containerd-down.sh
NODE_NAME=${NODE_NAME:-realk8s-node}
KUBELET_PORT=${KUBELET_PORT:-10250}; KUBELET_HEALTHZ_PORT=${KUBELET_HEALTHZ_PORT:-10248}
BRIDGE_IP=${BRIDGE_IP:-10.88.0.1/16}; NODE_IP=${NODE_IP:-${BRIDGE_IP%/*}}
CLUSTER_DNS=${CLUSTER_DNS:-10.0.0.10}   # no DNS service behind it; avoids the MissingClusterDNS event
WAIT_S=${WAIT_S:-120}
KV=${KUBELET_V:-2}
KUBE_PROXY=${KUBE_PROXY:-0}
SERVICE_CIDR=${SERVICE_CIDR:-10.0.0.0/24}
POD_SUBNET=${POD_SUBNET:-10.88.0.0/16}
if [ "$KUBE_PROXY" = 1 ]; then KUBELET_ADDRESS=${KUBELET_ADDRESS:-$NODE_IP}; POD_ROUTES=${POD_ROUTES:-$SERVICE_CIDR}
else KUBELET_ADDRESS=${KUBELET_ADDRESS:-127.0.0.1}; POD_ROUTES=${POD_ROUTES:-}; fi
PIDS=$STATEDIR/pids; LOGS=$STATEDIR/logs; KDIR=$STATEDIR/kubelet; CSTATE=$STATEDIR/containerd
KUBECTL=("$BIN/kubectl" --kubeconfig "$STATEDIR/kubeconfig")
log() { echo "[node-up $(date +%H:%M:%S)] $*"; }
ours() { grep -qzxF "REALK8S_STATEDIR=$STATEDIR" "/proc/$1/environ" 2>/dev/null; }

[ "$KUBE_PROXY" = 1 ] && { [ -x "$BIN/kube-proxy" ] || { echo "missing $BIN/kube-proxy (build.sh builds it)" >&2; exit 1; }; }
for b in kubelet kubectl; do [ -x "$BIN/$b" ] || { echo "missing $BIN/$b" >&2; exit 1; }; done
for b in containerd containerd-shim-runc-v2 runc ctr crictl; do
  [ -x "$NODEOUT/bin/$b" ] || { echo "missing $NODEOUT/bin/$b" >&2; exit 1; }
done
[ -s "$STATEDIR/kubelet.kubeconfig" ] || { echo "no $STATEDIR/kubelet.kubeconfig: run up.sh first" >&2; exit 1; }
# the kubelet's client cert must be system:node:$NODE_NAME (NodeRestriction), baked in by up.sh
cn=$(openssl x509 -noout -subject -in "$STATEDIR/pki/kubelet.crt" | sed -n 's/.*CN *= *//p')
[ "$cn" = "system:node:$NODE_NAME" ] || { echo "pki/kubelet.crt is for '$cn', not system:node:$NODE_NAME (NODE_NAME must match up.sh's)" >&2; exit 1; }
"${KUBECTL[@]}" get --raw /readyz >/dev/null || { echo "apiserver not ready: run up.sh $STATEDIR first" >&2; exit 1; }

if [ -e "$PIDS/kubelet.pid" ] && ours "$(cat "$PIDS/kubelet.pid")"; then
  echo "kubelet already running (pid $(cat "$PIDS/kubelet.pid")); run node-down.sh $STATEDIR first" >&2; exit 1
fi
for p in "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port 127.0.0.1:$p is in use" >&2; exit 1; fi
done
mkdir -p "$PIDS" "$LOGS" "$KDIR/root" "$KDIR/pod-logs" "$CSTATE"
echo "$NODEOUT" > "$STATEDIR/node.out"

# The kubelet (protectKernelDefaults=false) rewrites these host sysctls (vm.overcommit_memory=1,
# kernel.panic=10, kernel.panic_on_oops=1, ...); keep the originals so node-down.sh restores them.
if [ ! -s "$KDIR/sysctl.orig" ]; then
  for k in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
    [ -r "/proc/sys/$k" ] && echo "$k $(cat "/proc/sys/$k")"
  done > "$KDIR/sysctl.orig"
fi

# ---- containerd (its pid file is STATEDIR/containerd/containerd.pid; the marker is inherited)
export REALK8S_STATEDIR="$STATEDIR"
log "starting containerd ($CSTATE)"
BRIDGE_IP="$BRIDGE_IP" POD_SUBNET="$POD_SUBNET" POD_ROUTES="$POD_ROUTES" "$REALNODE/containerd-up.sh" "$CSTATE" "$NODEOUT" >>"$LOGS/containerd-up.log" 2>&1 \
  || { echo "containerd-up.sh failed:" >&2; tail -20 "$LOGS/containerd-up.log" >&2; exit 1; }
cpid=$(cat "$CSTATE/containerd.pid")
ours "$cpid" || { echo "containerd pid $cpid is not ours (already running from elsewhere?)" >&2; exit 1; }
SOCK="$CSTATE/run/containerd.sock"
log "containerd pid $cpid, socket unix://$SOCK; images: $("$NODEOUT/bin/ctr" --address "$SOCK" -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

# ---- kubelet
cat > "$KDIR/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# default: serve on loopback only (the node's InternalIP is the bridge address, so the apiserver
# cannot reach this port: kubectl logs/exec/port-forward do not work; everything else does).
# KUBE_PROXY=1: on the node IP (a local bridge address), so kubectl logs/exec work.
address: $KUBELET_ADDRESS
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 30s}
  x509: {clientCAFile: $STATEDIR/pki/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 30s, cacheUnauthorizedTTL: 10s}
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /
enforceNodeAllocatable: ["pods"]
${SYSTEM_RESERVED_MEMORY:+systemReserved: {memory: \"$SYSTEM_RESERVED_MEMORY\"\}}
failCgroupV1: false
failSwapOn: false
# root here lacks CAP_SYS_RESOURCE: the default -999 cannot be applied
oomScoreAdj: 0
podLogsDir: $KDIR/pod-logs
clusterDomain: cluster.local
clusterDNS: ["$CLUSTER_DNS"]
resolvConf: /etc/resolv.conf
# a big host with little free disk must not evict everything / GC the imported images
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
staticPodPath: ""
nodeStatusUpdateFrequency: 10s
EOF

log "starting kubelet (node $NODE_NAME, IP $NODE_IP)"
# shellcheck disable=SC2086
nohup "$BIN/kubelet" --config="$KDIR/config.yaml" --kubeconfig="$STATEDIR/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --root-dir="$KDIR/root" --cert-dir="$KDIR/root/pki" --v="$KV" ${KUBELET_EXTRA_ARGS:-} \
  </dev/null >>"$LOGS/kubelet.log" 2>&1 &
echo $! > "$PIDS/kubelet.pid"

alive() { kill -0 "$(cat "$PIDS/kubelet.pid")" 2>/dev/null && return 0
  echo "kubelet died; tail of $LOGS/kubelet.log (run node-down.sh $STATEDIR):" >&2; tail -n 40 "$LOGS/kubelet.log" >&2; exit 1; }
wait_for() { local what=$1; shift
  for _ in $(seq "$WAIT_S"); do
    if "$@" >/dev/null 2>&1; then log "$what: ok"; return 0; fi
    alive; sleep 1
  done
  echo "timed out waiting for $what; tail of $LOGS/kubelet.log:" >&2; tail -n 40 "$LOGS/kubelet.log" >&2; exit 1; }
wait_for "kubelet /healthz" curl -fsS "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
wait_for "node $NODE_NAME registered" "${KUBECTL[@]}" get node "$NODE_NAME"
wait_for "node $NODE_NAME Ready" "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
"${KUBECTL[@]}" get node "$NODE_NAME" -o wide
taints=$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.spec.taints}')
[ -z "$taints" ] || log "WARNING: node has taints: $taints"
# ---- kube-proxy (KUBE_PROXY=1): Services, in particular kubernetes 10.0.0.1:443 -> the apiserver
if [ "$KUBE_PROXY" = 1 ]; then
  [ -s "$STATEDIR/kube-proxy.kubeconfig" ] || { echo "no $STATEDIR/kube-proxy.kubeconfig: rerun up.sh (it makes one)" >&2; exit 1; }
  if [ -e "$PIDS/kube-proxy.pid" ] && ours "$(cat "$PIDS/kube-proxy.pid")"; then
    echo "kube-proxy already running (pid $(cat "$PIDS/kube-proxy.pid"))" >&2; exit 1; fi
  ep=$("${KUBECTL[@]}" get endpointslices -n default -l kubernetes.io/service-name=kubernetes \
        -o jsonpath='{.items[*].endpoints[*].addresses[*]}' 2>/dev/null || true)
  [ -n "$ep" ] || log "WARNING: the kubernetes Service has no endpoint (apiserver on loopback? use up.sh with API_ADDR=$NODE_IP)"
  mkdir -p "$STATEDIR/kube-proxy"
  cat > "$STATEDIR/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATEDIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
# NodePorts only on the bridge address (no 127.0.0.1 NodePorts: no route_localnet=1)
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false, masqueradeAll: false}
# leave the host's conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: 127.0.0.1:${KUBE_PROXY_HEALTHZ_PORT:-10256}
metricsBindAddress: 127.0.0.1:${KUBE_PROXY_METRICS_PORT:-10249}
oomScoreAdj: 0
EOF
  log "starting kube-proxy (iptables mode)"
  nohup "$BIN/kube-proxy" --config="$STATEDIR/kube-proxy/config.yaml" --v="${KUBE_PROXY_V:-2}" \
    </dev/null >>"$LOGS/kube-proxy.log" 2>&1 &
  echo $! > "$PIDS/kube-proxy.pid"
  kp_ok=0
  for _ in $(seq "$WAIT_S"); do
    kill -0 "$(cat "$PIDS/kube-proxy.pid")" 2>/dev/null || { echo "kube-proxy died:" >&2; tail -n 30 "$LOGS/kube-proxy.log" >&2; exit 1; }
    if curl -fsS "http://127.0.0.1:${KUBE_PROXY_HEALTHZ_PORT:-10256}/healthz" >/dev/null 2>&1 \
       && iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q "default/kubernetes:https"; then kp_ok=1; break; fi
    sleep 1
  done
  [ "$kp_ok" = 1 ] || { echo "kube-proxy: no rules for default/kubernetes after ${WAIT_S}s" >&2; tail -n 30 "$LOGS/kube-proxy.log" >&2; exit 1; }
  log "kube-proxy: rules for default/kubernetes in place (endpoint ${ep:-none}); ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
fi
log "node up: export KUBECONFIG=$STATEDIR/kubeconfig"
