"""A real Kubernetes control plane with KWOK nodes, for `--cluster real-kwok`.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (v1.35 binaries, built by the
real tier's build script into ``$ZENML_OOM_REALTIER_CACHE/k8s/bin``) and KWOK v0.8.0 run as
children of this process on free loopback ports, with a throwaway PKI made by openssl. KWOK plays
the attempts with the Stages in ``kwok/`` (the sim.oom contract: run ``sim.oom/run-seconds``,
then OOMKilled 137 while the memory limit is below ``sim.oom/need-bytes``, else Completed; the
container's terminated state one update before the pod phase, as a kubelet 1.35 reports it).

The clients under test (supervisor, baseline) talk to it as a ServiceAccount, as an
orchestrator pod would; a FlowSchema of their own makes the API server count their requests
(``apiserver_flowcontrol_dispatched_requests_total``). An audit policy logs the few writes the
latency figures need (attempt creates, pod status patches) with the server's own timestamps.
Every process is stopped by its own handle on exit, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "ZENML_OOM_REALTIER_CACHE"
DEFAULT_CACHE = "/var/cache/zenml-oom/realtier"
STAGES_DIR = Path(__file__).with_name("kwok")
CLIENT_NS, CLIENT_SA = "oom-bench", "bench-client"
FLOW_SCHEMA = "oom-bench-client"
NODE_PODS = 110  # a kubelet's default max-pods
K8S_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Request
  verbs: [patch]
  resources: [{group: "", resources: ["pods/status"]}]
- level: Metadata
  verbs: [create]
  resources: [{group: "", resources: ["pods"]}, {group: batch, resources: ["jobs"]}]
- level: None
"""

CLIENT_OBJECTS = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {CLIENT_NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {CLIENT_SA}, namespace: {CLIENT_NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {CLIENT_SA}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{kind: ServiceAccount, name: {CLIENT_SA}, namespace: {CLIENT_NS}}}]
---
# Where a ServiceAccount's requests land anyway (FlowSchema service-accounts -> workload-low);
# a schema of its own only gives the API server's counters a label for the client.
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {FLOW_SCHEMA}}}
spec:
  matchingPrecedence: 800
  priorityLevelConfiguration: {{name: workload-low}}
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects: [{{kind: ServiceAccount, serviceAccount: {{name: {CLIENT_SA}, namespace: {CLIENT_NS}}}}}]
    resourceRules:
    - {{verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"], clusterScope: true}}
    nonResourceRules: [{{verbs: ["*"], nonResourceURLs: ["*"]}}]
"""


class ControlPlaneError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))


def k8s_bin_dir() -> Path:
    return Path(os.environ.get("ZENML_OOM_K8S_BIN", cache_dir() / "k8s" / "bin"))


def kwok_binary() -> Path:
    return Path(os.environ.get("ZENML_OOM_KWOK_BIN", cache_dir() / "kwok" / "bin" / "kwok"))


def missing_binaries() -> list[str]:
    """What `--cluster real-kwok` needs and does not find, each with how to get it."""
    out = [
        f"{k8s_bin_dir() / b} (build: realcluster/realk8s/build.sh)"
        for b in K8S_BINARIES
        if not os.access(k8s_bin_dir() / b, os.X_OK)
    ]
    if not os.access(kwok_binary(), os.X_OK):
        out.append(
            f"{kwok_binary()} (build: GOBIN={kwok_binary().parent} "
            "go install sigs.k8s.io/kwok/cmd/kwok@v0.8.0)"
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` from /proc/PID/stat, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_metrics(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of metric `name` in Prometheus text format as (labels, value)."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels_text, _, value = line[len(name) + 1 :].rpartition("} ")
        labels = {}
        for part in labels_text.split('",'):
            key, _, val = part.partition('="')
            labels[key] = val.rstrip('"')
        out.append((labels, float(value)))
    return out


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")  # RSA is slow to make


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class KwokControlPlane:
    """Context manager: a started control plane + KWOK with `nodes` fake nodes."""

    def __init__(self, nodes: int = 2, work_dir: Path | None = None) -> None:
        self.nodes = nodes
        self._tmp = None if work_dir else tempfile.TemporaryDirectory(prefix="oom-bench-kwok-")
        self.dir = Path(work_dir or self._tmp.name)  # type: ignore[union-attr]
        self.bin = k8s_bin_dir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self.api_port = free_port()
        self.admin_kubeconfig = self.dir / "admin.kubeconfig"
        self.kubeconfig_path = self.dir / "client.kubeconfig"  # the clients' (a ServiceAccount)
        self.audit_log = self.dir / "audit.log"
        self.node_names: list[str] = []

    # ---- life cycle
    def __enter__(self) -> KwokControlPlane:
        missing = missing_binaries()
        if missing:
            raise ControlPlaneError("--cluster real-kwok needs: " + "; ".join(missing))
        try:
            self._pki()
            self._start()
            self.add_nodes(self.nodes)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every child (reverse start order): SIGTERM, SIGKILL after 15 s."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    # ---- set-up
    def _pki(self) -> None:
        d = self.dir / "pki"
        d.mkdir(parents=True, exist_ok=True)
        _openssl(
            *("req", "-x509", "-new", "-nodes", *EC_KEY, "-days", "30"),
            *("-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-subj", "/CN=oom-bench-ca"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"),
        )
        server = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        self._cert(d, "apiserver", "/CN=kube-apiserver", server)
        self._cert(d, "admin", "/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth\n")
        _openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(d / "sa.key"))
        _openssl("ec", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))
        self._write_kubeconfig(
            self.admin_kubeconfig,
            {
                "client-certificate": str(d / "admin.crt"),
                "client-key": str(d / "admin.key"),
            },
        )
        self.audit_policy = self.dir / "audit-policy.yaml"
        self.audit_policy.write_text(AUDIT_POLICY)

    def _cert(self, d: Path, name: str, subject: str, ext: str) -> None:
        ext_file = d / f"{name}.ext"
        ext_file.write_text("basicConstraints=CA:FALSE\n" + ext)
        csr = d / f"{name}.csr"
        _openssl(
            *("req", "-new", "-nodes", *EC_KEY, "-subj", subject),
            *("-keyout", str(d / f"{name}.key"), "-out", str(csr)),
        )
        _openssl(
            *("x509", "-req", "-in", str(csr), "-CA", str(d / "ca.crt")),
            *("-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "30", "-sha256"),
            *("-out", str(d / f"{name}.crt"), "-extfile", str(ext_file)),
        )

    def _write_kubeconfig(self, path: Path, user: dict[str, str]) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "bench",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.api_port}",
                        "certificate-authority": str(self.dir / "pki" / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "bench", "user": user}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
            "current-context": "bench",
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        path.chmod(0o600)

    def _spawn(self, name: str, binary: Path, *args: str) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        # Own session: a Ctrl-C in the terminal reaches the bench, which stops these in order.
        self.procs[name] = subprocess.Popen(
            [str(binary), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait(self, what: str, probe: Any, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    tail = (self.dir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise ControlPlaneError(
                        f"{name} exited ({proc.returncode}) while {what}:\n{tail}"
                    )
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.5)
        raise ControlPlaneError(f"timed out waiting for {what} (logs in {self.dir})")

    def kubectl(self, *args: str, input: str | None = None, kubeconfig: Path | None = None) -> str:
        proc = subprocess.run(
            [
                str(self.bin / "kubectl"),
                "--kubeconfig",
                str(kubeconfig or self.admin_kubeconfig),
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def _start(self) -> None:
        pki = self.dir / "pki"
        etcd_port, peer_port = free_port(), free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            self.bin / "etcd",
            *("--name", "bench", "--data-dir", str(self.dir / "etcd")),
            *("--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url),
            *("--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url),
            *("--initial-cluster", f"bench={peer_url}", "--listen-metrics-urls", ""),
            # Throwaway data: no fsync (the disk is shared; an fsync stall is not the API's cost).
            *("--unsafe-no-fsync=true", "--log-level", "warn"),
        )
        self._wait("etcd starts", lambda: urllib.request.urlopen(etcd_url + "/health", timeout=2))
        self._spawn(
            "kube-apiserver",
            self.bin / "kube-apiserver",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--etcd-servers={etcd_url}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=RBAC",
            f"--audit-policy-file={self.audit_policy}",
            f"--audit-log-path={self.audit_log}",
            # 0 would mean lumberjack's default, 100 MB, then a rotation the reader would miss
            "--audit-log-maxsize=1000000",
            "--profiling=false",
        )
        self._wait("kube-apiserver is ready", lambda: self.get("/readyz") == "ok")
        self._spawn(
            "kube-controller-manager",
            self.bin / "kube-controller-manager",
            f"--kubeconfig={self.admin_kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--service-cluster-ip-range=10.0.0.0/24",
        )
        self._spawn(
            "kube-scheduler",
            self.bin / "kube-scheduler",
            f"--kubeconfig={self.admin_kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
        )
        self.kubectl("apply", "-f", "-", input=CLIENT_OBJECTS)
        self._wait(
            "the client's ServiceAccount",
            lambda: self.kubectl("-n", CLIENT_NS, "get", "serviceaccount", CLIENT_SA),
        )
        token = self.kubectl("-n", CLIENT_NS, "create", "token", CLIENT_SA, "--duration=48h")
        self._write_kubeconfig(self.kubeconfig_path, {"token": token.strip()})
        args = [
            f"--kubeconfig={self.admin_kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            # Without Leases the node lifecycle controller marks the nodes NotReady after ~50 s.
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "-v=WARN",  # at INFO kwok logs every patch
        ]
        for stage in sorted(STAGES_DIR.glob("*.yaml")):
            args.append(f"--config={stage}")
        self._spawn("kwok", kwok_binary(), *args)

    def add_nodes(self, count: int) -> None:
        """Create fake nodes up to `count` in all (110 pods each, as a kubelet's default)."""
        docs = []
        for i in range(len(self.node_names), count):
            name = f"kwok-node-{i}"
            self.node_names.append(name)
            docs.append(json.dumps(fake_node(name, i)))
        if docs:
            self.kubectl("apply", "-f", "-", input="\n---\n".join(docs))
        self._wait(f"{count} KWOK node(s) Ready", lambda: self.ready_nodes() >= count)

    def ready_nodes(self) -> int:
        """KWOK nodes whose Ready condition is True, from one list. (`kubectl wait` shares its
        timeout across the nodes it checks one by one: 51 nodes never fit in 5 s.)"""
        path = '{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'
        out = self.kubectl("get", "nodes", "-l", "type=kwok", "-o", f"jsonpath={path}")
        return sum(line.strip() == "True" for line in out.splitlines())

    # ---- measuring
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        ctx.load_cert_chain(self.dir / "pki" / "admin.crt", self.dir / "pki" / "admin.key")
        return ctx

    def get(self, path: str) -> str:
        url = f"https://127.0.0.1:{self.api_port}{path}"
        with urllib.request.urlopen(url, context=self._ssl(), timeout=30) as resp:
            return str(resp.read().decode())

    def scrape(self) -> tuple[Counter[tuple[str, str]], int]:
        """(every resource request the API server counted, by (verb, resource[/subresource]);
        the clients' own, from their FlowSchema's dispatched requests)."""
        text = self.get("/metrics")
        by_verb: Counter[tuple[str, str]] = Counter()
        for labels, value in parse_metrics(text, "apiserver_request_total"):
            resource = labels.get("resource", "")
            if not resource:  # /metrics, /readyz, discovery: not the workload's
                continue
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            by_verb[(labels.get("verb", "").lower(), resource)] += int(value)
        client = sum(
            int(value)
            for labels, value in parse_metrics(
                text, "apiserver_flowcontrol_dispatched_requests_total"
            )
            if labels.get("flow_schema") == FLOW_SCHEMA
        )
        return by_verb, client

    def cpu(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            value = cpu_seconds(proc.pid)
            if value is not None:
                out[name] = value
        return out


def fake_node(name: str, index: int) -> dict[str, Any]:
    """A Node KWOK manages (annotation kwok.x-k8s.io/node=fake), shaped like KWOK's docs'."""
    capacity = {"cpu": "64", "memory": "256Gi", "pods": str(NODE_PODS), "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
            },
        },
        "spec": {},
        "status": {
            # Both address types: KWOK's node-initialize would otherwise write an empty list.
            "addresses": [
                {"type": "InternalIP", "address": f"10.89.{index // 250}.{index % 250 + 1}"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "containerRuntimeVersion": "containerd://2.1.4",
                "kubeletVersion": "v1.35.4",
                "kernelVersion": "6.1.0-kwok",
                "osImage": "kwok fake node",
            },
        },
    }
