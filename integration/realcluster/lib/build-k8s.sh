#!/usr/bin/env bash
# build-k8s.sh OUTDIR — build a Kubernetes control plane + kubelet + etcd from Go module sources.
# Output: OUTDIR/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl,etcd}
# Timings: OUTDIR/build-times.txt. Needs only Go and a reachable Go module proxy.
# Env overrides: K8S_VERSION (v1.35.4), ETCD_VERSION (v3.6.16), GOMODCACHE/GOCACHE
# (default: inside OUTDIR so the build is self-contained), BINS (subset of k8s binaries), NICE (10).
set -euo pipefail

OUTDIR=${1:?usage: build.sh OUTDIR}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd -P)

K8S_VERSION=${K8S_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
BINS=${BINS:-"kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy"}
NICE=${NICE:-10}

# v1.35.4 -> staging modules are tagged v0.35.4
ver=${K8S_VERSION#v}; major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}
STAGING_VERSION="v0.${rest}"

export GOMODCACHE=${GOMODCACHE:-$OUTDIR/gomodcache}
export GOCACHE=${GOCACHE:-$OUTDIR/gocache}
export GOFLAGS="-modcacherw -buildvcs=false"   # rw mod cache: OUTDIR can be rm -rf'd
export CGO_ENABLED=0
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

BIN="$OUTDIR/bin"; SRC="$OUTDIR/src"; TIMES="$OUTDIR/build-times.txt"
mkdir -p "$BIN" "$SRC/k8s" "$SRC/etcd"
: > "$TIMES"
log() { echo "[build $(date +%H:%M:%S)] $*"; }
now() { date +%s; }
T0=$(now)

# ---- etcd: tiny main calling etcdmain.Main (same as upstream server/main.go).
cd "$SRC/etcd"
cat > main.go <<'GO'
// Command etcd: thin wrapper around go.etcd.io/etcd/server/v3/etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
printf 'module realk8s/etcdbuild\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
rm -f go.sum
log "go mod tidy (etcd $ETCD_VERSION)"
t=$(now); nice -n "$NICE" go mod tidy; echo "mod-tidy-etcd $(( $(now)-t ))s" >> "$TIMES"
log "go build etcd"
t=$(now)
nice -n "$NICE" go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .
echo "etcd $(( $(now)-t ))s" >> "$TIMES"


# ---- Kubernetes: wrapper module requiring k8s.io/kubernetes, staging modules replaced by tags.
cd "$OUTDIR"   # outside any module
log "resolving k8s.io/kubernetes@$K8S_VERSION"
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$gomod" ] || { echo "cannot find go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
gover=$(awk '$1=="go"{print $2; exit}' "$gomod")
godebug=$(awk '$1=="godebug"{print; exit}' "$gomod")
# every "k8s.io/x => ./staging/..." replace in upstream go.mod becomes "k8s.io/x => k8s.io/x STAGING_VERSION"
staging=$(awk '$2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
[ -n "$staging" ] || { echo "no staging replaces found in $gomod" >&2; exit 1; }

cd "$SRC/k8s"
{
  echo "module realk8s/k8sbuild"
  echo
  echo "go $gover"
  [ -n "$godebug" ] && echo && echo "$godebug"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
  echo ")"
} > go.mod
# tools.go pins the main packages so `go mod tidy` fills go.sum for exactly what we build
{
  echo "//go:build tools"
  echo
  echo "package tools"
  echo
  echo "import ("
  for b in $BINS; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
  echo ")"
} > tools.go
rm -f go.sum
log "go mod tidy (k8s, $(wc -w <<< "$staging") staging replaces -> $STAGING_VERSION)"
t=$(now); nice -n "$NICE" go mod tidy; echo "mod-tidy-k8s $(( $(now)-t ))s" >> "$TIMES"

# version stamping, as hack/lib/version.sh does
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  LDF+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
done
TAGS=${TAGS:-selinux,notest,grpcnotrace}

for b in $BINS; do
  log "go build $b"
  t=$(now)
  nice -n "$NICE" go build -trimpath -tags "$TAGS" -ldflags "$LDF" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b"
  echo "$b $(( $(now)-t ))s" >> "$TIMES"
  log "built $b in $(( $(now)-t ))s"
done

{
  echo "total $(( $(now)-T0 ))s"
  echo "gomodcache $(du -sh "$GOMODCACHE" | cut -f1)"
  echo "gocache $(du -sh "$GOCACHE" | cut -f1)"
} >> "$TIMES"
log "done"; cat "$TIMES"
"$BIN/kubectl" version --client || true
"$BIN/etcd" --version || true
