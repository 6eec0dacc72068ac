"""Writing secrets safely: atomic writes, owner-only (0600) private keys, certificates."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically with permission bits exactly ``mode``.

    The bytes go to a temporary file in the same directory created with ``os.open(..., mode)``
    (so they are never readable by others, whatever the umask), are fsynced, then the file is
    linked into place (``overwrite=False``: fails with :class:`FileExistsError` if ``path``
    exists, without a race) or renamed over it (``overwrite=True``).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {str(directory)!r} does not exist")
    if not overwrite and path.exists():
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}")
    tmp_name = str(directory / f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                raise FileExistsError(
                    f"refusing to overwrite existing file {str(path)!r}"
                ) from None
            os.unlink(tmp_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def write_private_key(
    path: str | os.PathLike[str],
    key: ec.EllipticCurvePrivateKey,
    *,
    overwrite: bool = False,
    passphrase: bytes | None = None,
) -> Path:
    """Write ``key`` as PKCS#8 PEM to ``path`` with mode 0600, atomically.

    Refuses (``FileExistsError``) to replace an existing file unless ``overwrite``. With
    ``passphrase`` the key is encrypted (use this for the CA key; gRPC needs node keys in clear).
    """
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    p = Path(path)
    atomic_write(p, pem, 0o600, overwrite=overwrite)
    return p


def write_certificate(
    path: str | os.PathLike[str], cert: x509.Certificate, *, overwrite: bool = True
) -> Path:
    """Write ``cert`` as PEM to ``path`` with mode 0644, atomically (certificates are public)."""
    p = Path(path)
    atomic_write(p, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite=overwrite)
    return p
