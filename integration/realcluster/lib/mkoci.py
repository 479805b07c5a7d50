#!/usr/bin/env python3
"""Pack a root filesystem directory into a single-layer OCI image layout tar.

usage: mkoci.py ROOTFS OUT.tar --name localhost/python:3.11-bookworm \
           [--cmd python3 ...] [--entrypoint /pause] [--env K=V ...] [--workdir /]

The result (oci-layout, index.json, blobs/sha256/{config,manifest,layer}) can be
imported with `ctr -n k8s.io images import OUT.tar`; the image name comes from the
io.containerd.image.name annotation in index.json.
Only the standard library is used.  Run as root so device nodes/ownership are read.
"""

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time

# Directories whose *contents* are not packed (the directory itself is kept).
EMPTY_DIRS = {
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "var/tmp",
    "var/cache/apt/archives",
    "var/lib/apt/lists",
}
SKIP_FILES = {"etc/hostname", "etc/resolv.conf", "etc/hosts"}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_layer(rootfs, tar_path):
    """Write an uncompressed, sorted tar of rootfs with numeric owners."""

    def tinfo_filter(ti):
        ti.uname = ""
        ti.gname = ""
        return ti

    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            rel = os.path.relpath(dirpath, rootfs)
            rel = "" if rel == "." else rel
            dirnames.sort()
            if rel in EMPTY_DIRS:
                dirnames[:] = []
                filenames = []
            # Symlinked directories show up in dirnames but are not descended
            # by os.walk (followlinks=False); add them as plain entries.
            entries = sorted(
                filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            )
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            if rel:
                ti = tar.gettarinfo(dirpath, arcname=rel)
                tar.addfile(tinfo_filter(ti))
            for name in entries:
                arc = os.path.join(rel, name) if rel else name
                if arc in SKIP_FILES:
                    continue
                full = os.path.join(dirpath, name)
                ti = tar.gettarinfo(full, arcname=arc)
                if ti is None:  # sockets etc.
                    continue
                ti = tinfo_filter(ti)
                if ti.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rootfs")
    ap.add_argument("out")
    ap.add_argument("--name", required=True, help="full image name, e.g. localhost/pause:3.10")
    ap.add_argument("--cmd", nargs="*", default=None)
    ap.add_argument("--entrypoint", nargs="*", default=None)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--uncompressed", action="store_true", help="store the layer uncompressed")
    args = ap.parse_args()

    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="mkoci-", dir=os.path.dirname(os.path.abspath(args.out)))
    try:
        blobs = os.path.join(tmp, "blobs", "sha256")
        os.makedirs(blobs)
        layer_tar = os.path.join(tmp, "layer.tar")
        build_layer(args.rootfs, layer_tar)
        diff_id = sha256_file(layer_tar)
        if args.uncompressed:
            layer_blob = layer_tar
            layer_media = "application/vnd.oci.image.layer.v1.tar"
        else:
            layer_blob = layer_tar + ".gz"
            with (
                open(layer_tar, "rb") as src,
                open(layer_blob, "wb") as raw,
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            ):
                shutil.copyfileobj(src, gz, 1 << 20)
            layer_media = "application/vnd.oci.image.layer.v1.tar+gzip"
        layer_digest = sha256_file(layer_blob)
        layer_size = os.path.getsize(layer_blob)
        os.rename(layer_blob, os.path.join(blobs, layer_digest.split(":", 1)[1]))

        env = args.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        cfg_inner = {"Env": env, "WorkingDir": args.workdir}
        if args.cmd is not None:
            cfg_inner["Cmd"] = args.cmd
        if args.entrypoint is not None:
            cfg_inner["Entrypoint"] = args.entrypoint
        created = "1970-01-01T00:00:00Z"
        config = {
            "created": created,
            "architecture": args.arch,
            "os": "linux",
            "config": cfg_inner,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {
                    "created": created,
                    "created_by": "mkoci.py " + os.path.basename(args.rootfs.rstrip("/")),
                }
            ],
        }

        def put_json(obj):
            data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
            dg = "sha256:" + hashlib.sha256(data).hexdigest()
            with open(os.path.join(blobs, dg.split(":", 1)[1]), "wb") as f:
                f.write(data)
            return dg, len(data)

        cfg_digest, cfg_size = put_json(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cfg_digest,
                "size": cfg_size,
            },
            "layers": [{"mediaType": layer_media, "digest": layer_digest, "size": layer_size}],
        }
        man_digest, man_size = put_json(manifest)
        tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": man_digest,
                    "size": man_size,
                    "platform": {"architecture": args.arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": args.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        with open(os.path.join(tmp, "index.json"), "w") as f:
            json.dump(index, f, separators=(",", ":"))
        with open(os.path.join(tmp, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        os.unlink(layer_tar) if os.path.exists(layer_tar) else None

        out_tmp = args.out + ".part"
        with tarfile.open(out_tmp, "w") as out:
            for name in ("oci-layout", "index.json", "blobs"):
                out.add(os.path.join(tmp, name), arcname=name)
        os.rename(out_tmp, args.out)
        print(
            json.dumps(
                {
                    "name": args.name,
                    "manifest": man_digest,
                    "config": cfg_digest,
                    "layer": layer_digest,
                    "layer_size": layer_size,
                    "diff_id": diff_id,
                    "seconds": round(time.time() - t0, 1),
                }
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
