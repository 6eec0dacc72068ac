"""Network namespaces as the test's own hosts: one switch namespace with a bridge, and one
namespace per host joined to it by a veth pair.

Everything lives inside namespaces this module creates (names ``<prefix>-<host>``, with a
random prefix): the root namespace gets no interface, address or route.  Addresses come
from a private test range given by the caller (e.g. ``10.200.0.0/24``) and exist only
inside the namespaces.  :meth:`NetnsLab.close` kills the processes it started (by pid)
and deletes every namespace it made, which also deletes their interfaces.

:func:`unavailable_reason` says why namespaces cannot be used here (not root, no ``ip``,
creation refused), or None.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence

__all__ = ["NetnsLab", "unavailable_reason"]


def _ip(*args: str, netns: str | None = None, check: bool = True
        ) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=check)


def unavailable_reason() -> str | None:
    """Why this machine cannot run the multi-host test, or None if it can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run as root or with CAP_NET_ADMIN/CAP_SYS_ADMIN)"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed: apt-get install -y iproute2"
    probe = f"smpcprobe-{secrets.token_hex(3)}"
    try:
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"'ip netns add' is refused here: {r.stderr.strip() or r.returncode}"
        r = _ip("link", "add", "br0", "type", "bridge", netns=probe, check=False)
        if r.returncode != 0:
            return f"bridges cannot be created in a namespace here: {r.stderr.strip()}"
        r = _ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", netns=probe,
                check=False)
        if r.returncode != 0:
            return f"veth pairs cannot be created here: {r.stderr.strip()}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"network namespaces are not usable here: {exc}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


class NetnsLab:
    """A switch namespace with bridge ``br0`` and host namespaces attached to it."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"smt{secrets.token_hex(2)}"
        self.switch = f"{self.prefix}-sw"
        self.hosts: dict[str, str] = {}       # host -> address
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        try:
            self._add_ns(self.switch)
            _ip("link", "add", "br0", "type", "bridge", netns=self.switch)
            _ip("link", "set", "br0", "up", netns=self.switch)
            _ip("link", "set", "lo", "up", netns=self.switch)
        except BaseException:
            self.close()
            raise

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def port(self, host: str) -> str:
        """The switch-side interface of ``host``'s link (at most 15 characters)."""
        return f"p{list(self.hosts).index(host)}"

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)

    def add_host(self, host: str, address: str, prefix_len: int = 24) -> str:
        """A namespace for ``host`` with ``eth0`` = ``address`` on the switch; returns its name."""
        ns = self.ns(host)
        self._add_ns(ns)
        self.hosts[host] = address
        port = self.port(host)
        _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
            "netns", self.switch)
        _ip("link", "set", port, "master", "br0", netns=self.switch)
        _ip("link", "set", port, "up", netns=self.switch)
        _ip("addr", "add", f"{address}/{prefix_len}", "dev", "eth0", netns=ns)
        _ip("link", "set", "eth0", "up", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        return ns

    def set_link(self, host: str, up: bool) -> None:
        """Cut (``up=False``) or restore the link between ``host`` and the switch."""
        _ip("link", "set", self.port(host), "up" if up else "down", netns=self.switch)

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def run(self, host: str, argv: Sequence[str], timeout: float = 120,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command inside ``host``'s namespace and wait for it (bounded)."""
        return subprocess.run(self.command(host, argv), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              env=None if env is None else {**os.environ, **env})

    def start(self, host: str, argv: Sequence[str], log_path: str,
              env: Mapping[str, str] | None = None, cwd: str | None = None
              ) -> subprocess.Popen:
        """Start a background process in ``host``'s namespace (killed by :meth:`close`)."""
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            proc = subprocess.Popen(self.command(host, argv), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, cwd=cwd,
                                    start_new_session=True)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill the processes started here (by pid) and delete every namespace made here."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
