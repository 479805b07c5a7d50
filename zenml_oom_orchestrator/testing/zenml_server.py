"""A real local ZenML server (``zenml login --local``) in a throw-away config directory.

Used by the integration tests and the demo. Everything lives under one directory, so a test run
never touches the user's own ZenML config, and stopping the server leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Variables that make a process talk to *this* server and nothing else.
_QUIET_ENV = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_AUTO_OPEN_DASHBOARD": "false",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "ZENML_LOGGING_COLORS_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def zenml_cli() -> list[str]:
    """The `zenml` command installed next to the interpreter running this code (the venv's)."""
    script = Path(sys.executable).with_name("zenml")
    return [str(script)] if script.exists() else ["zenml"]


def _run_cli(
    env: dict[str, str],
    args: tuple[str, ...],
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*zenml_cli(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"`zenml {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@dataclass
class LocalZenServer:
    """A running local ZenML server and the config directory that points at it."""

    config_path: Path
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"  # the address it listens on, and that its clients and pods use

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """A full environment for a subprocess that should use this server."""
        return {
            **os.environ,
            **_QUIET_ENV,
            "ZENML_CONFIG_PATH": str(self.config_path),
            **self.extra_env,
        }

    def cli(
        self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run `zenml ARGS...` against this server; output is captured as text."""
        return _run_cli(self.env(), args, cwd=cwd, check=check, timeout=timeout)

    def activate_in_process(self) -> None:
        """Point this Python process's ZenML client at the server.

        ZenML keeps its global config and client as singletons, so they are reset after the
        environment changes.
        """
        os.environ.update(_QUIET_ENV)
        os.environ["ZENML_CONFIG_PATH"] = str(self.config_path)
        os.environ.update(self.extra_env)
        from zenml.client import Client
        from zenml.config.global_config import GlobalConfiguration

        GlobalConfiguration._reset_instance()
        Client._reset_instance()

    def daemon_pids(self) -> list[int]:
        """The daemon's pid from its pid file, or, before it wrote one (a `login` that timed
        out), every process whose command line names this server's config directory."""
        pid_file = self.config_path / "zen_server" / "daemon" / "service.pid"
        with contextlib.suppress(OSError, ValueError):
            return [int(pid_file.read_text().strip())]
        mine = str(self.config_path).encode() + b"/"
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if mine in (proc / "cmdline").read_bytes() and int(proc.name) != os.getpid():
                    pids.append(int(proc.name))
        return pids

    def stop(self) -> None:
        """`zenml logout --local`; kill the daemon if that did not work."""
        with contextlib.suppress(Exception):
            self.cli("logout", "--local", check=False, timeout=60)
        for pid in self.daemon_pids():
            self._kill(pid)

    @staticmethod
    def _kill(pid: int) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)


def start_local_zen_server(
    config_path: Path, port: int | None = None, host: str = "127.0.0.1"
) -> LocalZenServer:
    """Start a NO_AUTH SQLite ZenML server with its config in ``config_path`` (about 15 s),
    listening on ``host`` (an address pods can reach, for a cluster whose pods are not
    processes on this machine)."""
    config_path.mkdir(parents=True, exist_ok=True)
    server = LocalZenServer(config_path=config_path, port=port or free_port(), host=host)
    try:
        # Seconds here; minutes on a slow machine (seen: > 3 min in an emulated VM under load),
        # where ZenML's own 60 s wait for its daemon (ZENML_DAEMON_SERVER_TIMEOUT) is too short.
        env = {"ZENML_DAEMON_SERVER_TIMEOUT": "600", **server.env()}
        args = ("login", "--local", "--ip-address", host, "--port", str(server.port))
        _run_cli(env, args, timeout=900)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def local_zen_server(
    config_path: Path, port: int | None = None, host: str = "127.0.0.1"
) -> Iterator[LocalZenServer]:
    """Context manager around :func:`start_local_zen_server` that always stops the server."""
    server = start_local_zen_server(config_path, port, host)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class AuthenticatedZenServer:
    """A ZenML server that requires a login (OAuth2 password flow, SQLite), unlike
    ``zenml login --local``, which always runs without authentication.

    Clients log in as the default user (empty password) through :meth:`client_env`; runs
    submitted by them carry a ZenML API token to their pods, as on a deployed server.
    """

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"  # the address it listens on, and that its clients and pods use

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """A full environment for a subprocess that uses this server as the default user.

        The username and password reach only the client: ZenML never passes them to pods
        (they get an API token instead)."""
        return {
            **os.environ,
            **_QUIET_ENV,
            "ZENML_CONFIG_PATH": str(self.root / "client"),
            "ZENML_STORE_URL": self.url,
            "ZENML_STORE_USERNAME": "default",
            "ZENML_STORE_PASSWORD": "",
        }

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `zenml ARGS...` as a client of this server; output is captured as text."""
        return _run_cli(self.client_env(), args, check=check, timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@contextlib.contextmanager
def authenticated_zen_server(
    root: Path, timeout: float = 120, host: str = "127.0.0.1"
) -> Iterator[AuthenticatedZenServer]:
    """Start :class:`AuthenticatedZenServer` with everything under ``root``, listening on
    ``host`` (an address pods can reach); always stopped."""
    import secrets
    import urllib.request

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZENML_")},
        **_QUIET_ENV,
        "ZENML_CONFIG_PATH": str(root / "server"),
        "ZENML_SERVER": "true",
        "ZENML_SERVER_AUTH_SCHEME": "OAUTH2_PASSWORD_BEARER",
        "ZENML_SERVER_AUTO_ACTIVATE": "True",
        "ZENML_SERVER_DEPLOYMENT_TYPE": "local",
        "ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS": "true",
        "ZENML_SERVER_JWT_SECRET_KEY": secrets.token_hex(32),
        "ZENML_LOCAL_STORES_PATH": str(root / "stores"),
        "ZENML_STORE_URL": f"sqlite:///{root / 'zenml.db'}",
    }
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "zenml.zen_server.zen_server_api:app",
            "--host",
            host,
            "--port",
            str(port),
        ],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = AuthenticatedZenServer(root=root, port=port, process=process, host=host)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the ZenML server exited; see {root / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ZenML server did not start in {timeout:g}s")
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        log.close()
