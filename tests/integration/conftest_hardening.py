"""Helpers and fixtures of the hardening tests (fuzzing, load, multi-host).

Imported explicitly by ``test_fuzz_rpc.py``, ``test_fuzz_cli.py``, ``test_load.py`` and
``test_multihost.py`` (it is not a conftest: pytest does not load it by itself).

* :func:`hardened_federation` -- a session-scoped factory: builds a federation of real
  node processes on free loopback ports (mutual TLS), optionally with extra analyst
  identities issued by the federation's CA and allowed by every party's policy, and
  stops every one of them at the end of the session.
* :class:`RawCaller` -- calls any method of a node with *raw bytes* as the serialized
  request (a generic unary / stream call with an identity serializer), presenting a
  chosen certificate, so that malformed messages reach the server's handler.
* :func:`assert_specific` -- the contract every fuzzed call must meet: a specific status
  code (never UNKNOWN or INTERNAL), a non-empty one-sentence detail, no hang.
* :func:`rss_kb` -- a process's resident memory from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from parties.config import AnalystEntry, load_federation, load_party_config, save_config
from parties.federation import local as federation
from parties.pki.certs import issue_node_certificate, load_ca, save_node_credentials
from parties.pki.identity import fingerprint
from parties.privacy.exact import SAFEGUARDS_OFF
from parties.transport import wire
from parties.transport.tls import channel_credentials, channel_options
from smpc.linear import LinearModel

from .conftest import write_csv

CALL_DEADLINE = 10.0
"""Client-side deadline of every fuzzed call: a call still running then counts as a hang."""

BAD_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
CLIENT_DEADLINE_DETAILS = "Deadline Exceeded"  # what grpc says when *our* deadline fires


def _identity(b: bytes) -> bytes:
    return b


# ----------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """The end of one raw call: status code, details, duration, raw responses."""

    code: grpc.StatusCode
    details: str
    seconds: float
    responses: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    def __str__(self) -> str:
        return f"{self.code.name} after {self.seconds:.2f} s: {self.details!r}"


def assert_specific(out: Outcome, what: object = "") -> None:
    """A fuzzed call ended with a specific status and a sentence, within its deadline."""
    hung = (out.code == grpc.StatusCode.DEADLINE_EXCEEDED
            and out.details == CLIENT_DEADLINE_DETAILS)
    assert not hung, f"call hung (no answer within {CALL_DEADLINE} s): {what}"
    assert out.seconds < CALL_DEADLINE + 2.0, f"{out}: {what}"
    assert out.code not in BAD_CODES, f"unspecific status {out}: {what}"
    if not out.ok:
        d = out.details.strip()
        assert d, f"{out.code.name} without a details sentence: {what}"
        assert "\n" not in d and "Traceback" not in d, f"details not one sentence: {out}"


# ------------------------------------------------------------------------------ callers


class RawCaller:
    """Raw-bytes calls to node ``target`` of a federation, as the holder of ``cert``/``key``.

    The channel pins the target's node name like the runtime does; its send limit is
    raised to 64 MiB so that oversized messages reach the server (whose own 4 MiB limit
    is what is under test).
    """

    def __init__(self, directory: Path, target: str, cert: Path, key: Path,
                 ca: Path | None = None) -> None:
        lay = federation.Layout(directory)
        entry = lay.federation().node(target)
        opts = [o for o in wire.grpc_options() if o[0] != "grpc.max_send_message_length"]
        opts.append(("grpc.max_send_message_length", 64 << 20))
        self.target = target
        self.channel = grpc.secure_channel(
            entry.address, channel_credentials(cert, key, ca or lay.ca_cert),
            options=channel_options(target, opts))

    @classmethod
    def as_node(cls, directory: Path, target: str, who: str) -> RawCaller:
        """Call ``target`` with the certificate of node ``who`` of the same federation."""
        d = federation.Layout(directory).node_dir(who)
        return cls(directory, target, d / "cert.pem", d / "key.pem")

    @classmethod
    def as_analyst(cls, directory: Path, target: str) -> RawCaller:
        lay = federation.Layout(directory)
        return cls(directory, target, lay.analyst_cert, lay.analyst_key)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RawCaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, fn) -> Outcome:
        t0 = time.monotonic()
        try:
            responses = fn()
        except grpc.RpcError as err:
            return Outcome(err.code(), err.details() or "", time.monotonic() - t0)
        return Outcome(grpc.StatusCode.OK, "", time.monotonic() - t0, responses)

    def unary(self, method: str, data: bytes, timeout: float = CALL_DEADLINE) -> Outcome:
        call = self.channel.unary_unary(method, request_serializer=_identity,
                                        response_deserializer=_identity)
        return self._run(lambda: [call(data, timeout=timeout)])

    def stream_unary(self, method: str, datas: Iterable[bytes],
                     timeout: float = CALL_DEADLINE) -> Outcome:
        call = self.channel.stream_unary(method, request_serializer=_identity,
                                         response_deserializer=_identity)
        return self._run(lambda: [call(iter(list(datas)), timeout=timeout)])

    def stream_stream(self, method: str, datas: Iterable[bytes],
                      timeout: float = CALL_DEADLINE) -> Outcome:
        call = self.channel.stream_stream(method, request_serializer=_identity,
                                          response_deserializer=_identity)
        return self._run(lambda: list(call(iter(list(datas)), timeout=timeout)))


# ------------------------------------------------------------------------------ processes


def node_pid(directory: Path, name: str) -> int:
    """The pid of a running node of a federation directory."""
    pid = int(federation.Layout(directory).pid_file(name).read_text().strip())
    assert Path(f"/proc/{pid}").exists(), f"node {name} (pid {pid}) is not running"
    return pid


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def wait_for(predicate, timeout: float = 10.0, step: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (bounded)."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


def active_sessions(directory: Path, names: Sequence[str]) -> dict[str, int]:
    """``active_sessions`` of each node's Health answer."""
    return {n: int(federation.node_health(directory, n)["active_sessions"]) for n in names}


# ------------------------------------------------------------------------- federations


def relax_policies(directory: Path) -> None:
    """Let every party serve plain (non-DP) statistics, without the exact-mode safeguards.

    Test data: the hardening tests exercise the runtime, not the privacy controls (the
    safeguards are tested in tests/unit/test_exact_safeguards.py).
    """
    lay = federation.Layout(directory)
    for name in lay.parties():
        cfg = load_party_config(lay.config(name))
        policy = dataclasses.replace(cfg.policy, require_dp=False, **SAFEGUARDS_OFF)
        if policy != cfg.policy:
            save_config(dataclasses.replace(cfg, policy=policy), lay.config(name))


def add_analysts(directory: Path, names: Sequence[str]) -> dict[str, tuple[Path, Path]]:
    """Issue analyst certificates from the federation's CA, list them (pinned) in the
    federation config and allow them in every party's policy.  Before ``up`` only.

    Returns ``name -> (cert, key)``.
    """
    lay = federation.Layout(directory)
    ca = load_ca(lay.ca_cert, lay.ca_key)
    out: dict[str, tuple[Path, Path]] = {}
    fed = load_federation(lay.federation_file)
    for name in names:
        cert, key = issue_node_certificate(ca, name, "analyst")
        d = lay.directory / "analysts" / name
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        save_node_credentials(cert, key, d / "cert.pem", d / "key.pem", overwrite=True)
        fed.analysts.append(AnalystEntry(name, fingerprint(cert)))
        out[name] = (d / "cert.pem", d / "key.pem")
    save_config(fed, lay.federation_file)
    for party in lay.parties():
        cfg = load_party_config(lay.config(party))
        pol = dataclasses.replace(cfg.policy, allowed_analysts=[
            *cfg.policy.allowed_analysts, *names])
        save_config(dataclasses.replace(cfg, federation=fed, policy=pol), lay.config(party))
    return out


@dataclass
class HFed:
    """A running hardening federation and the plaintext it was built from."""

    directory: Path
    data: dict[str, dict[str, np.ndarray]]
    analysts: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    @property
    def layout(self) -> federation.Layout:
        return federation.Layout(self.directory)

    def pooled(self, columns: Sequence[str], parties: Sequence[str]) -> np.ndarray:
        return np.vstack([np.column_stack([self.data[p][c] for c in columns])
                          for p in parties])

    def nodes(self) -> list[str]:
        return [n.name for n in self.layout.nodes()]


@pytest.fixture(scope="session")
def hardened_federation(tmp_path_factory):
    """Factory ``make(name, parties, models=None, analysts=(), **init_kwargs) -> HFed``.

    ``parties``: party -> column -> values; ``models``: owner -> [LinearModel]
    (named after their kind: ``risk`` logistic, ``cost`` linear); ``analysts``: extra
    analyst identities.  Every federation made is stopped at the end of the session.
    """
    started: list[Path] = []

    def make(name: str, parties: dict[str, dict[str, np.ndarray]], *,
             models: dict[str, list[LinearModel]] | None = None,
             analysts: Sequence[str] = (), **init_kwargs) -> HFed:
        root = tmp_path_factory.mktemp(name)
        files = []
        for party, cols in parties.items():
            path = root / f"{party}.csv"
            write_csv(path, cols)
            files.append(path)
        model_files: dict[str, list[Path]] = {}
        for owner, ms in (models or {}).items():
            for m in ms:
                p = root / f"{'risk' if m.kind == 'logistic' else 'cost'}.json"
                p.write_text(json.dumps(m.to_json()))
                model_files.setdefault(owner, []).append(p)
        directory = root / "federation"
        # exact answers and exact predictions (the models' owners opt out of their model
        # protections): these tests exercise the runtime, not the privacy controls
        init_kwargs = {"allow_exact": True, **init_kwargs}
        federation.init_federation(directory, files, models=model_files, **init_kwargs)
        relax_policies(directory)
        extra = add_analysts(directory, analysts) if analysts else {}
        started.append(directory)
        federation.up(directory, timeout=90)
        return HFed(directory, parties, extra)

    yield make
    for d in started:
        federation.down(d)
