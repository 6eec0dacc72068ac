"""Secret files: written atomically, with exactly the permission bits asked for, never through a
symlink, never over an existing key unless asked, and without leaving a stray copy behind.

Real files in a temporary directory.  One test makes the temporary file's random name
predictable (it replaces ``secrets`` *as seen by* :mod:`parties.pki.files`) to stand for an
attacker on the same host who guesses or races that name: the defence under test is the
``O_EXCL | O_NOFOLLOW`` open, not the name's randomness.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from parties.pki import files
from parties.pki.certs import create_ca
from parties.pki.files import atomic_write, write_certificate, write_private_key


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_a_key_is_never_replaced_unless_asked(tmp_path: Path) -> None:
    """``write_private_key`` refuses to replace an existing key by default (a second ``init``
    must not destroy a node's identity) and returns where it wrote. Catches an overwriting
    default."""
    path = tmp_path / "node.key"
    first = ec.generate_private_key(ec.SECP256R1())
    assert write_private_key(path, first) == path
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite existing file"):
        write_private_key(path, ec.generate_private_key(ec.SECP256R1()))
    assert path.read_bytes() == before
    assert write_private_key(path, ec.generate_private_key(ec.SECP256R1()),
                             overwrite=True) == path
    assert path.read_bytes() != before and mode(path) == 0o600
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_permission_bits_are_exactly_the_mode_whatever_the_umask(tmp_path: Path,
                                                                 umask: int) -> None:
    """A key is 0600 and a certificate 0644 under any umask: a permissive umask cannot widen
    the key, a strict one cannot hide the certificate from the services that read it. Catches
    permissions left to the umask."""
    old = os.umask(umask)
    try:
        write_private_key(tmp_path / "k.key", ec.generate_private_key(ec.SECP256R1()))
        write_certificate(tmp_path / "c.pem", create_ca("demo").cert)
    finally:
        os.umask(old)
    assert mode(tmp_path / "k.key") == 0o600
    assert mode(tmp_path / "c.pem") == 0o644


def test_a_symlink_at_the_destination_is_never_followed(tmp_path: Path) -> None:
    """The destination is a symlink to a file elsewhere (or to nothing yet): without
    ``overwrite`` the write is refused and nothing is written through the link -- no file
    appears at its target, no temporary copy of the key is left behind; with ``overwrite`` the
    link itself is replaced by a 0600 file and its target is untouched. Catches a write that
    follows the link, a refusal that is swallowed (nothing written, no error), and a
    temporary file left behind on refusal."""
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    keys = tmp_path / "keys"
    keys.mkdir()
    dangling = keys / "dangling.key"
    dangling.symlink_to(tmp_path / "elsewhere" / "created-through-the-link")
    with pytest.raises(FileExistsError, match="refusing to overwrite existing file"):
        write_private_key(dangling, ec.generate_private_key(ec.SECP256R1()))
    assert not (tmp_path / "elsewhere" / "created-through-the-link").exists()
    assert dangling.is_symlink() and leftovers(keys) == []

    victim.write_bytes(b"not yours")
    victim.chmod(0o644)
    linked = keys / "linked.key"
    linked.symlink_to(victim)
    write_private_key(linked, ec.generate_private_key(ec.SECP256R1()), overwrite=True)
    assert not linked.is_symlink() and mode(linked) == 0o600
    assert b"PRIVATE KEY" in linked.read_bytes()
    assert victim.read_bytes() == b"not yours" and mode(victim) == 0o644
    assert leftovers(keys) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_planted_temporary_file_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool,
) -> None:
    """An attacker plants a symlink at the temporary file's name (made predictable here):
    the write fails instead of opening the link, the link's target keeps its content and mode,
    and the destination is not created. Catches an open without ``O_EXCL`` / ``O_NOFOLLOW``
    (the key would be written into the attacker's file)."""
    monkeypatch.setattr(files, "secrets", SimpleNamespace(token_hex=lambda n: "0" * (2 * n)))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"attacker-readable")
    victim.chmod(0o644)
    dest = tmp_path / "node.key"
    (tmp_path / f".node.key.{'0' * 16}.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):  # O_CREAT | O_EXCL refuses any existing name
        atomic_write(dest, b"-----BEGIN PRIVATE KEY-----", 0o600, overwrite=overwrite)
    assert victim.read_bytes() == b"attacker-readable" and mode(victim) == 0o644
    assert not dest.exists()


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    """Writing into a directory that does not exist fails with a sentence naming the
    directory (not the hidden temporary file's name)."""
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError) as ei:
        atomic_write(missing / "k.key", b"x", 0o600, overwrite=False)
    assert str(ei.value) == f"directory {str(missing)!r} does not exist"
    assert not missing.exists()
