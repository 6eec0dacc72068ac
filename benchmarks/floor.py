"""The transport floor: how long it takes to stream N bytes over one mutual-TLS connection.

A tiny TLS sink on 127.0.0.1 (Python :mod:`ssl`, the federation's own CA and node
certificates, mutual authentication, TLS 1.3 where available) reads a length-prefixed
stream and answers one byte when it has all of it.  The connection is set up once (the
handshake is not timed); :meth:`TlsSink.stream_seconds` times sending ``nbytes`` from a
preallocated buffer until the acknowledgement arrives, best of a few tries.  That is the
least any protocol must spend to move the same bytes between two processes -- no framing,
no serialization, no protocol logic, one connection.

The sink runs in a thread of this process: CPython releases the GIL around ``SSL_read`` /
``SSL_write``, so sender and receiver encrypt and decrypt on separate cores.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

CHUNK = 1 << 20


class TlsSink:
    """A mutual-TLS byte sink on loopback; see the module docstring."""

    def __init__(self, ca: Path, server_cert: Path, server_key: Path, client_cert: Path,
                 client_key: Path) -> None:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(str(server_cert), str(server_key))
        sctx.load_verify_locations(str(ca))
        sctx.verify_mode = ssl.CERT_REQUIRED
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_cert_chain(str(client_cert), str(client_key))
        cctx.load_verify_locations(str(ca))
        cctx.check_hostname = False  # identity is pinned by the CA; the cost is what matters
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, args=(sctx,), daemon=True,
                                        name="tls-sink")
        self._thread.start()
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = cctx.wrap_socket(raw)
        self.version = self._sock.version()
        self.cipher = (self._sock.cipher() or ("?",))[0]
        self._buf = memoryview(bytearray(CHUNK))
        self._cache: dict[int, float] = {}

    def _serve(self, ctx: ssl.SSLContext) -> None:
        try:
            conn, _ = self._listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(conn, server_side=True) as s:
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                while True:
                    head = self._read_exact(s, 8)
                    if head is None:
                        return
                    (remaining,) = struct.unpack("<Q", head)
                    while remaining:
                        got = s.recv_into(view[: min(CHUNK, remaining)])
                        if not got:
                            return
                        remaining -= got
                    s.sendall(b"k")
        except (OSError, ssl.SSLError) as exc:
            self._error = exc

    @staticmethod
    def _read_exact(s: ssl.SSLSocket, n: int) -> bytes | None:
        out = b""
        while len(out) < n:
            part = s.recv(n - len(out))
            if not part:
                return None
            out += part
        return out

    def _once(self, nbytes: int) -> float:
        t0 = time.perf_counter()
        self._sock.sendall(struct.pack("<Q", nbytes))
        left = nbytes
        while left:
            k = min(CHUNK, left)
            self._sock.sendall(self._buf[:k])
            left -= k
        if self._sock.recv(1) != b"k":
            raise OSError(f"TLS sink failed: {self._error}")
        return time.perf_counter() - t0

    def stream_seconds(self, nbytes: int, tries: int = 3) -> float:
        """Best-of-``tries`` seconds to stream ``nbytes`` and get the acknowledgement."""
        nbytes = int(nbytes)
        if nbytes not in self._cache:
            self._once(min(nbytes, CHUNK))  # warm the path
            self._cache[nbytes] = min(self._once(nbytes) for _ in range(tries))
        return self._cache[nbytes]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=2.0)


def sink_for_federation(directory: Path) -> TlsSink:
    """A sink using the federation's CA, the coordinator's and the first party's identity."""
    from parties.federation.local import Layout

    lay = Layout(directory)
    nodes = lay.nodes()
    server = lay.node_dir(nodes[0].name)
    party = lay.node_dir(next(n.name for n in nodes if n.role == "party"))
    return TlsSink(lay.ca_cert, server / "cert.pem", server / "key.pem",
                   party / "cert.pem", party / "key.pem")
