#!/usr/bin/env bash
# zenml-image.sh OUTDIR PROJECTDIR
# Builds the ZenML step image for the plugin in PROJECTDIR without Docker or a registry:
#   OUTDIR/rootfs-zenml          bookworm minbase + python3, python3-venv, python3-pip, ca-certificates,
#                                venv /opt/venv with the project's wheel (-> zenml==0.98.*, kubernetes<26, ...)
#   OUTDIR/images/zenml-oom.tar  OCI image layout tar, name localhost/zenml-oom:dev (io.containerd.image.name)
# The base comes from `cp -a OUTDIR/rootfs/python` (image.sh) when present, else from debootstrap.
# Idempotent: an existing rootfs is reused; the project is reinstalled only when its sources changed
# (sha256 over the files in the wheel's build context, stamp /opt/venv/.zimg-src.sha256); the tar is
# always repacked.  Every mount made under the rootfs is unmounted on exit (trap).
# Env: WORK (scratch: wheel, source copy, logs; default OUTDIR/zenml-build), IMAGE_NAME
#      (localhost/zenml-oom:dev), FRESH_ROOTFS=1 (rebuild the rootfs), BASE_ROOTFS (default
#      OUTDIR/rootfs/python; "none" forces debootstrap), DEBIAN_MIRROR (as image.sh), EXTRA_PIP
#      (extra requirement specs, e.g. "zenml==0.98.1"), ZENML_INTEGRATIONS (default "kubernetes":
#      their requirements as ZenML lists them are installed too), COMPILE_PYC=1 (keep .pyc of the venv; default 0),
#      CA_BUNDLE (CA file pip trusts during the build only; default: the host's
#      /etc/ssl/certs/ca-certificates.crt; never copied into the image).
# Import:  ctr --address SOCK -n k8s.io images import OUTDIR/images/zenml-oom.tar (containerd-up.sh
#          imports every OUTDIR/images/*.tar).  Pods: image localhost/zenml-oom:dev, imagePullPolicy Never.
set -euo pipefail
OUT=${1:?usage: zenml-image.sh OUTDIR PROJECTDIR}
PROJ=${2:?usage: zenml-image.sh OUTDIR PROJECTDIR}
mkdir -p "$OUT/images"
OUT=$(cd "$OUT" && pwd -P)
PROJ=$(cd "$PROJ" && pwd -P)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
WORK=${WORK:-$OUT/zenml-build}
mkdir -p "$WORK/logs"
WORK=$(cd "$WORK" && pwd -P)
IMAGE_NAME=${IMAGE_NAME:-localhost/zenml-oom:dev}
R="$OUT/rootfs-zenml"
PARTIAL="$R.partial"
BASE_ROOTFS=${BASE_ROOTFS:-$OUT/rootfs/python}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
APT_PKGS="python3 python3-venv python3-pip ca-certificates"
PKG=${PKG:-zenml_oom_orchestrator}   # the project's package directory (what the wheel contains)
ZENML_INTEGRATIONS=${ZENML_INTEGRATIONS:-kubernetes}   # ZenML integrations whose requirements are added
ts() { date +%s; }
T0=$(ts)
exec 3>&2   # the terminal's stderr, for messages from the exit trap (which may run inside a redirection)

# ---------------------------------------------------------------- mounts (always cleaned up)
mounts_under() {  # mount points at or below $1, deepest first
  awk -v p="$1" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/self/mounts | sort -r
}
umount_all() {
  local d m
  for d in "$R" "$PARTIAL"; do
    for m in $(mounts_under "$d"); do
      umount "$m" 2>/dev/null || umount -l "$m" || echo "WARNING: could not unmount $m" >&2
    done
  done
}
cleanup() {
  local rc=$?
  umount_all
  rm -rf "$R/tmp/zimg" "$PARTIAL/tmp/zimg" 2>/dev/null || true
  [ $rc = 0 ] || echo "zenml-image.sh: FAILED (rc=$rc); logs in $WORK/logs; mounts left under $R: $(mounts_under "$R" | wc -l)" >&3
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
safe_rm_rootfs() {  # never rm -rf a tree with something mounted in it
  [ -z "$(mounts_under "$1")" ] || { echo "refusing to remove $1: mounts inside" >&2; exit 1; }
  rm -rf "$1"
}
in_root() {  # in_root ROOT CMD...: clean environment, /proc and /dev mounted, host resolv.conf
  local root=$1; shift
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
  mountpoint -q "$root/dev/pts" || { [ -d "$root/dev/pts" ] && mount --bind /dev/pts "$root/dev/pts"; } || true
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  env -i PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 PIP_NO_INPUT=1 \
    ZENML_CONFIG_PATH=/tmp/zimg/zenconfig ZENML_ANALYTICS_OPT_IN=false \
    ${PIP_CERT_IN_ROOT:+PIP_CERT=$PIP_CERT_IN_ROOT} \
    chroot "$root" "$@"
}

# ---------------------------------------------------------------- 1) wheel of the project
t=$(ts); echo "== wheel of $PROJ"
rm -rf "$WORK/src"; mkdir -p "$WORK/src" "$WORK/wheels"
if git -C "$PROJ" rev-parse --show-toplevel >/dev/null 2>&1; then
  # tracked + untracked-but-not-ignored files (skips .venv, build/, *.egg-info, caches)
  git -C "$PROJ" ls-files -z -co --exclude-standard -- pyproject.toml README.md setup.py setup.cfg \
      MANIFEST.in LICENSE "$PKG/*" \
    | while IFS= read -r -d '' f; do [ -f "$PROJ/$f" ] && printf '%s\0' "$f"; done \
    | tar -C "$PROJ" --null -T - -cf - | tar -C "$WORK/src" -xf -
else
  tar -C "$PROJ" --exclude=.git --exclude=.venv --exclude=__pycache__ --exclude='*.egg-info' \
    --exclude=build --exclude=dist -cf - pyproject.toml README.md "$PKG" | tar -C "$WORK/src" -xf -
fi
SRC_SHA=$( (cd "$WORK/src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-64)
SRC_SHA="$SRC_SHA ${EXTRA_PIP:-} integrations:$ZENML_INTEGRATIONS"
rm -f "$WORK"/wheels/zenml_oom_orchestrator-*.whl
"${PYTHON:-python3}" -m pip wheel --no-deps --no-cache-dir -q -w "$WORK/wheels" "$WORK/src" >"$WORK/logs/wheel.log" 2>&1 \
  || { tail -30 "$WORK/logs/wheel.log"; exit 1; }
WHLS=("$WORK"/wheels/zenml_oom_orchestrator-*.whl); WHL=${WHLS[0]}
echo "   $(basename "$WHL") ($(( $(ts) - t ))s)"

# ---------------------------------------------------------------- 2) rootfs
umount_all
if [ "${FRESH_ROOTFS:-0}" = 1 ] && [ -e "$R" ]; then echo "== FRESH_ROOTFS=1: removing $R"; safe_rm_rootfs "$R"; fi
if [ ! -x "$R/usr/bin/python3" ]; then
  [ ! -e "$R" ] || safe_rm_rootfs "$R"
  [ ! -e "$PARTIAL" ] || safe_rm_rootfs "$PARTIAL"
  t=$(ts)
  if [ "$BASE_ROOTFS" != none ] && [ -x "$BASE_ROOTFS/usr/bin/python3" ]; then
    echo "== copy base rootfs $BASE_ROOTFS"
    cp -a "$BASE_ROOTFS" "$PARTIAL"
  else
    if [ -z "${DEBIAN_MIRROR:-}" ]; then
      DEBIAN_MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -1 || true)
    fi
    echo "== debootstrap bookworm (mirror: ${DEBIAN_MIRROR:-debootstrap default})"
    nice -n 10 debootstrap --variant=minbase --include="${APT_PKGS// /,}" bookworm "$PARTIAL" \
      ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$WORK/logs/debootstrap.log" 2>&1 \
      || { umount_all; tail -20 "$WORK/logs/debootstrap.log"; exit 1; }
    umount_all
  fi
  echo "   base: $(( $(ts) - t ))s"
  mv "$PARTIAL" "$R"
fi

# Debian packages (no-op when present)
missing=()
for p in $APT_PKGS; do
  # shellcheck disable=SC2016  # ${Status} is dpkg-query's format, not ours
  chroot "$R" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  t=$(ts); echo "== apt-get install ${missing[*]}"
  { in_root "$R" apt-get update -q && \
    in_root "$R" apt-get install -y -q --no-install-recommends "${missing[@]}" && \
    in_root "$R" apt-get clean; } >"$WORK/logs/apt.log" 2>&1 || { tail -30 "$WORK/logs/apt.log"; exit 1; }
  echo "   apt: $(( $(ts) - t ))s"
fi
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/* 2>/dev/null || true

# ---------------------------------------------------------------- 3) venv + project
if [ ! -f "$R/opt/venv/pyvenv.cfg" ] || [ ! -e "$R/opt/venv/bin/pip" ]; then
  t=$(ts); echo "== venv /opt/venv"
  rm -rf "$R/opt/venv"
  in_root "$R" /usr/bin/python3 -m venv /opt/venv
  echo "   venv: $(( $(ts) - t ))s"
fi
if [ "$(cat "$R/opt/venv/.zimg-src.sha256" 2>/dev/null)" != "$SRC_SHA" ]; then
  t=$(ts); echo "== pip install $(basename "$WHL") ${EXTRA_PIP:-}"
  mkdir -p "$R/tmp/zimg/wheels"
  cp "$WHL" "$R/tmp/zimg/wheels/"
  PIP_CERT_IN_ROOT=
  if [ -f "$CA_BUNDLE" ]; then cp -L "$CA_BUNDLE" "$R/tmp/zimg/ca.crt"; PIP_CERT_IN_ROOT=/tmp/zimg/ca.crt; fi
  COMPILE=--no-compile; [ "${COMPILE_PYC:-0}" = 1 ] && COMPILE=--compile
  rm -f "$R/opt/venv/.zimg-src.sha256"
  {
    # same version (0.1.0) with new code: replace the project itself, then resolve its dependencies
    in_root "$R" /opt/venv/bin/pip install -q $COMPILE --force-reinstall --no-deps "/tmp/zimg/wheels/$(basename "$WHL")" &&
    in_root "$R" /opt/venv/bin/pip install $COMPILE "/tmp/zimg/wheels/$(basename "$WHL")" ${EXTRA_PIP:+"$EXTRA_PIP"} &&
    # what `zenml integration install kubernetes` would add (0.98: kubernetes<26 and Jinja2), asked
    # from ZenML itself, so that ZenML's registry sees the integration as installed inside the pod
    in_root "$R" /opt/venv/bin/python -c 'import sys
from zenml.integrations.registry import integration_registry as r
open("/tmp/zimg/integration-reqs.txt", "w").write("".join(q + "\n" for n in sys.argv[1:] for q in r.select_integration_requirements(n)))' "$ZENML_INTEGRATIONS" &&
    echo "integration requirements ($ZENML_INTEGRATIONS): $(tr '\n' ' ' < "$R/tmp/zimg/integration-reqs.txt")" &&
    in_root "$R" /opt/venv/bin/pip install $COMPILE -r /tmp/zimg/integration-reqs.txt
  } >"$WORK/logs/pip.log" 2>&1 || { tail -40 "$WORK/logs/pip.log"; exit 1; }
  grep -E '^(Successfully installed|integration requirements)' "$WORK/logs/pip.log" | cut -c1-300 || true
  in_root "$R" /opt/venv/bin/pip check || echo "WARNING: pip check reports conflicts (above)"
  echo "$SRC_SHA" > "$R/opt/venv/.zimg-src.sha256"
  rm -rf "$R/tmp/zimg"
  echo "   pip: $(( $(ts) - t ))s"
fi
# lean: no pip cache, no __pycache__ in the venv unless COMPILE_PYC=1
rm -rf "$R/root/.cache" "$R/tmp/zimg"
[ "${COMPILE_PYC:-0}" = 1 ] || find "$R/opt/venv" -name __pycache__ -type d -prune -exec rm -rf {} +
# writable HOME / workdir for any uid (as the project's Dockerfile: ZenML may run pods as the host user)
mkdir -p "$R/app"; chmod 1777 "$R/app"

t=$(ts); echo "== check imports (chroot)"
in_root "$R" /opt/venv/bin/python -c 'import zenml, zenml_oom_orchestrator.flavors as f; print("zenml", zenml.__version__, "flavor", f.OOMKubernetesOrchestratorFlavor().name)'
umount_all
echo "   check: $(( $(ts) - t ))s"

# ---------------------------------------------------------------- 4) pack
t=$(ts); echo "== pack $IMAGE_NAME"
nice -n 10 python3 "$HERE/mkoci.py" "$R" "$OUT/images/zenml-oom.tar" --name "$IMAGE_NAME" --cmd python \
  --workdir /app \
  --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env VIRTUAL_ENV=/opt/venv --env PYTHONUNBUFFERED=1 --env LANG=C.UTF-8 \
  --env HOME=/app --env ZENML_CONFIG_PATH=/app/.zenconfig --env ZENML_ANALYTICS_OPT_IN=false
echo "   pack: $(( $(ts) - t ))s"
echo "== rootfs $(du -sh "$R" | cut -f1), venv $(du -sh "$R/opt/venv" | cut -f1), tar $(du -h "$OUT/images/zenml-oom.tar" | cut -f1); total $(( $(ts) - T0 ))s"
ls -l "$OUT/images/zenml-oom.tar"
