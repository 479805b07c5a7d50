#!/usr/bin/env bash
# build-node.sh OUTDIR
# Builds/installs the container runtime pieces for a real (cgroup v1, cgroupfs) node into OUTDIR:
#   OUTDIR/bin/{containerd,containerd-shim-runc-v2,ctr}   containerd 2.x from the Go module proxy (CGO_ENABLED=0)
#   OUTDIR/bin/runc                                       Debian's runc (apt), copied
#   OUTDIR/bin/crictl                                     cri-tools from the Go module proxy (CGO_ENABLED=0)
#   OUTDIR/cni/bin/{bridge,host-local,loopback,...}       Debian's containernetworking-plugins, copied
#   OUTDIR/pause-rootfs/pause                             tiny static pause binary (pause/main.go here)
# Env: CONTAINERD_VERSION (default v2.2.9), CRICTL_VERSION (default v1.34.0), SKIP_APT=1 to skip apt-get,
#      RUNC_VERSION (e.g. v1.3.6: also build runc with cgo into OUTDIR/runc-1.3.6/runc), REBUILD=1.
# Go settings (GOPROXY etc.) are taken from the environment.  Builds run under nice -n 10.
set -euo pipefail
OUT=${1:?usage: build.sh OUTDIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.2.9}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
mkdir -p "$OUT/bin" "$OUT/cni/bin" "$OUT/src" "$OUT/logs" "$OUT/pause-rootfs"
OUT=$(cd "$OUT" && pwd -P)
export GOFLAGS=${GOFLAGS:--buildvcs=false}
ts() { date +%s; }
step() { echo "== $* ($(date +%T))"; }

# 1. Debian packages: runc, CNI plugins, debootstrap (for base-images.sh), iptables (kube-proxy)
if [ "${SKIP_APT:-0}" != 1 ]; then
  t=$(ts); step "apt: runc containernetworking-plugins debootstrap iptables"
  if ! apt-get install -y --no-install-recommends runc containernetworking-plugins debootstrap iptables >"$OUT/logs/apt.log" 2>&1; then
    apt-get update >>"$OUT/logs/apt.log" 2>&1
    apt-get install -y --no-install-recommends runc containernetworking-plugins debootstrap iptables >>"$OUT/logs/apt.log" 2>&1
  fi
  echo "   apt: $(( $(ts) - t ))s"
fi
install -m 0755 "$(command -v runc)" "$OUT/bin/runc"
for p in bridge host-local loopback portmap bandwidth firewall tuning; do
  [ -x "/usr/lib/cni/$p" ] && install -m 0755 "/usr/lib/cni/$p" "$OUT/cni/bin/$p"
done

# helper: fetch a module from the proxy and copy it into a writable source dir
fetch_mod() { # module version destdir
  local dir
  dir=$(go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "module download failed: $1@$2" >&2; exit 1; }
  rm -rf "$3"; cp -r "$dir" "$3"; chmod -R u+w "$3"
}

# 2. containerd (static, no cgo: btrfs snapshotter excluded)
if [ ! -x "$OUT/bin/containerd" ] || [ "${REBUILD:-0}" = 1 ]; then
  t=$(ts); step "containerd $CONTAINERD_VERSION"
  fetch_mod github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" "$OUT/src/containerd"
  PKG=github.com/containerd/containerd/v2
  LD="-s -w -X $PKG/version.Version=$CONTAINERD_VERSION -X $PKG/version.Revision=modproxy -X $PKG/version.Package=$PKG"
  ( cd "$OUT/src/containerd"
    export CGO_ENABLED=0
    nice -n 10 go build -trimpath -tags "urfave_cli_no_docs no_btrfs" -ldflags "$LD" -o "$OUT/bin/containerd" ./cmd/containerd
    nice -n 10 go build -trimpath -tags "urfave_cli_no_docs no_btrfs no_grpc" -ldflags "$LD" -o "$OUT/bin/containerd-shim-runc-v2" ./cmd/containerd-shim-runc-v2
    nice -n 10 go build -trimpath -tags "urfave_cli_no_docs no_btrfs" -ldflags "$LD" -o "$OUT/bin/ctr" ./cmd/ctr
  ) >"$OUT/logs/containerd-build.log" 2>&1
  echo "   containerd: $(( $(ts) - t ))s"
fi

# 2b. optional: runc from the module proxy (cgo + libseccomp) into OUTDIR/runc-$RUNC_VERSION/runc
#     (select it with RUNC_BINARY=... for containerd-up.sh / verify.sh).  Off unless RUNC_VERSION is set.
if [ -n "${RUNC_VERSION:-}" ] && [ ! -x "$OUT/runc-${RUNC_VERSION#v}/runc" ]; then
  t=$(ts); step "runc $RUNC_VERSION (cgo)"
  [ "${SKIP_APT:-0}" = 1 ] || apt-get install -y --no-install-recommends libseccomp-dev pkg-config gcc libc6-dev >>"$OUT/logs/apt.log" 2>&1
  fetch_mod github.com/opencontainers/runc "$RUNC_VERSION" "$OUT/src/runc"
  ( cd "$OUT/src/runc"
    CGO_ENABLED=1 nice -n 10 go build -trimpath -mod=mod -buildmode=pie -tags "seccomp urfave_cli_no_docs" \
      -ldflags "-X main.gitCommit=modproxy -X main.version=${RUNC_VERSION#v}" -o "$OUT/runc-${RUNC_VERSION#v}/runc" .
  ) >"$OUT/logs/runc-build.log" 2>&1
  echo "   runc: $(( $(ts) - t ))s"
fi

# 3. crictl
if [ ! -x "$OUT/bin/crictl" ] || [ "${REBUILD:-0}" = 1 ]; then
  t=$(ts); step "crictl $CRICTL_VERSION"
  fetch_mod sigs.k8s.io/cri-tools "$CRICTL_VERSION" "$OUT/src/cri-tools"
  ( cd "$OUT/src/cri-tools"
    CGO_ENABLED=0 nice -n 10 go build -trimpath -mod=mod \
      -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
      -o "$OUT/bin/crictl" ./cmd/crictl
  ) >"$OUT/logs/crictl-build.log" 2>&1
  echo "   crictl: $(( $(ts) - t ))s"
fi

# 4. pause binary (static Go)
t=$(ts); step "pause"
( cd "$HERE/pause" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w" -o "$OUT/pause-rootfs/pause" . )
echo "   pause: $(( $(ts) - t ))s"

step "done"
"$OUT/bin/containerd" --version
"$OUT/bin/runc" --version | head -1
[ ! -x "$OUT/bin/crictl" ] || "$OUT/bin/crictl" --version
ls -l "$OUT/bin" "$OUT/cni/bin"
