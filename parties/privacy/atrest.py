"""Encryption at rest for the results and keys a party writes to disk: AES-256-GCM.

A party encrypts with a **key file** (32 random bytes from ``os.urandom``, mode 0600, made by
:func:`create_key_file`) or a **passphrase** (scrypt with a fresh random 16-byte salt per file;
the scrypt parameters are stored in the file header). Files are written atomically with mode 0600
(:func:`parties.tls.atomic_write`): a reader sees the old file or the new one, never a mix.

File format, version 1 (all integers big-endian)::

    magic        7 bytes   b"SMPCENC"
    version      1 byte    1
    kdf          1 byte    1 = key file, 2 = scrypt passphrase
    [kdf = 2:    log2_n 1 byte, r 1 byte, p 1 byte, salt 16 bytes]
    key check    8 bytes   HMAC-SHA256(master, "smpc.atrest.v1.check")[:8]
    purpose_len  2 bytes
    purpose      purpose_len bytes, UTF-8
    nonce        12 bytes  os.urandom
    ciphertext   len(data) bytes, then the 16-byte GCM tag

The AES key is ``HMAC-SHA256(master, "smpc.atrest.v1.aes-256-gcm")``, where ``master`` is the key
file's content or the scrypt output. The associated data is the whole header (everything before
the ciphertext), so the KDF parameters, the salt and the **purpose** are authenticated: the purpose
(by default the file's name, e.g. ``result-<session>.json.enc``) binds the file to what it is for,
so a file renamed or swapped for another is refused even under the right key.

Guarantees: confidentiality and integrity of ``data`` against anyone without the key file or
passphrase; wrong key, wrong passphrase, wrong purpose, truncation and any modified byte are each
refused with :class:`AtRestError` (a :class:`smpc.errors.InputError`) in one sentence. The key check
value tells a wrong key from a modified file; it gives an attacker nothing the GCM tag does not
(both let a passphrase guess be tested offline -- which is what scrypt's cost is for).

Not protected: the purpose text and the plaintext length are readable (don't put secrets in
the purpose); a *rollback* to an older file encrypted under the same key and purpose is not
detected. Random 96-bit nonces: keep under 2**32 files per key file. Passphrase files cost one
scrypt (``log2_n=15, r=8, p=1``: 32 MiB, ~0.1 s) to write and to read; headers asking for more than
``log2_n=20``, ``r=16`` or ``p=16`` are refused before any work is done.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from parties.pki.files import atomic_write
from smpc.errors import InputError

__all__ = [
    "KEY_BYTES",
    "MAGIC",
    "VERSION",
    "AtRestError",
    "KeyFileKey",
    "PassphraseKey",
    "create_key_file",
    "decrypt_bytes",
    "decrypt_file",
    "encrypt_bytes",
    "encrypt_file",
    "load_key_file",
]

MAGIC = b"SMPCENC"
VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16
TAG_BYTES = 16
CHECK_BYTES = 8
KDF_KEYFILE, KDF_SCRYPT = 1, 2
MAX_LOG2_N, MAX_R, MAX_P = 20, 16, 16
MAX_PURPOSE_BYTES = 1024
_DOMAIN = b"smpc.atrest.v1"


class AtRestError(InputError):
    """An encrypted file cannot be written or read: wrong key, modified file, bad format."""


# ----------------------------------------------------------------------------------- keys


@dataclass(frozen=True, repr=False)
class KeyFileKey:
    """A 32-byte master key (normally read from a key file by :func:`load_key_file`)."""

    key: bytes = field(repr=False)
    source: str = "key"

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_BYTES:
            raise AtRestError(f"an at-rest key must be exactly {KEY_BYTES} bytes.")

    def __repr__(self) -> str:
        return f"KeyFileKey(source={self.source!r})"


@dataclass(frozen=True, repr=False)
class PassphraseKey:
    """A passphrase; each file gets its own scrypt salt, so the derived key differs per file.

    ``log2_n``, ``r``, ``p`` are the scrypt parameters used when *writing* (reading uses the
    file's own, within the limits in the module docstring).
    """

    passphrase: bytes = field(repr=False)
    log2_n: int = 15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.passphrase, str):
            object.__setattr__(self, "passphrase", self.passphrase.encode("utf-8"))
        if not isinstance(self.passphrase, bytes) or not self.passphrase:
            raise AtRestError("the at-rest passphrase must be a non-empty string.")
        _check_scrypt(self.log2_n, self.r, self.p, "the requested")

    def __repr__(self) -> str:
        return f"PassphraseKey(log2_n={self.log2_n}, r={self.r}, p={self.p})"


AnyKey = KeyFileKey | PassphraseKey | bytes


def _check_scrypt(log2_n: int, r: int, p: int, what: str) -> None:
    if not (1 <= log2_n <= MAX_LOG2_N and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise AtRestError(
            f"{what} scrypt parameters (log2_n={log2_n}, r={r}, p={p}) are outside the "
            f"allowed range (log2_n 1-{MAX_LOG2_N}, r 1-{MAX_R}, p 1-{MAX_P})."
        )


def create_key_file(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write 32 bytes from ``os.urandom`` to ``path`` with mode 0600, atomically.

    Refuses (:class:`AtRestError`) to replace an existing file unless ``overwrite`` -- replacing a
    key makes everything encrypted under it unreadable.
    """
    p = Path(path).expanduser()
    try:
        atomic_write(p, os.urandom(KEY_BYTES), 0o600, overwrite=overwrite)
    except FileExistsError:
        raise AtRestError(f"key file {str(p)!r} already exists; refusing to replace it.") from None
    except FileNotFoundError as exc:
        raise AtRestError(f"cannot create key file {str(p)!r}: {exc}.") from None
    return p


def load_key_file(path: str | os.PathLike[str]) -> KeyFileKey:
    """Read a key file: exactly 32 bytes, not accessible by group or others."""
    p = Path(path).expanduser()
    try:
        mode = os.stat(p).st_mode
        data = p.read_bytes()
    except OSError as exc:
        raise AtRestError(f"cannot read key file {str(p)!r}: {exc.strerror}.") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AtRestError(
            f"key file {str(p)!r} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); run chmod 600 on it."
        )
    if len(data) != KEY_BYTES:
        raise AtRestError(f"key file {str(p)!r} must hold {KEY_BYTES} bytes, it holds {len(data)}.")
    return KeyFileKey(data, source=str(p))


def _as_key(key: AnyKey) -> KeyFileKey | PassphraseKey:
    if isinstance(key, KeyFileKey | PassphraseKey):
        return key
    if isinstance(key, bytes):
        return KeyFileKey(key)
    raise AtRestError(
        f"the at-rest key must be a KeyFileKey, a PassphraseKey or 32 bytes, got "
        f"{type(key).__name__}."
    )


def _scrypt(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=1 << log2_n, r=r, p=p).derive(passphrase)


def _subkeys(master: bytes) -> tuple[bytes, bytes]:
    aes = hmac.new(master, _DOMAIN + b".aes-256-gcm", hashlib.sha256).digest()
    check = hmac.new(master, _DOMAIN + b".check", hashlib.sha256).digest()[:CHECK_BYTES]
    return aes, check


def _purpose_bytes(purpose: str) -> bytes:
    if not isinstance(purpose, str) or not purpose:
        raise AtRestError("the purpose of an encrypted file must be a non-empty string.")
    b = purpose.encode("utf-8")
    if len(b) > MAX_PURPOSE_BYTES:
        raise AtRestError(f"the purpose must be at most {MAX_PURPOSE_BYTES} bytes of UTF-8.")
    return b


# ------------------------------------------------------------------------------ in memory


def encrypt_bytes(data: bytes, key: AnyKey, purpose: str) -> bytes:
    """The encrypted form (format above) of ``data`` for ``purpose``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AtRestError(f"only bytes can be encrypted, got {type(data).__name__}.")
    k = _as_key(key)
    pb = _purpose_bytes(purpose)
    header = bytearray(MAGIC + bytes([VERSION]))
    if isinstance(k, PassphraseKey):
        salt = os.urandom(SALT_BYTES)
        master = _scrypt(k.passphrase, salt, k.log2_n, k.r, k.p)
        header += bytes([KDF_SCRYPT, k.log2_n, k.r, k.p]) + salt
    else:
        master = k.key
        header += bytes([KDF_KEYFILE])
    aes, check = _subkeys(master)
    nonce = os.urandom(NONCE_BYTES)
    header += check + struct.pack(">H", len(pb)) + pb + nonce
    ct = AESGCM(aes).encrypt(nonce, bytes(data), bytes(header))
    return bytes(header) + ct


def decrypt_bytes(blob: bytes, key: AnyKey, purpose: str, *, name: str = "the data") -> bytes:
    """Decrypt what :func:`encrypt_bytes` produced for ``purpose``; ``name`` is used in errors.

    Raises :class:`AtRestError` with one sentence for: not an smpc encrypted file, unsupported
    version, truncated, key-file/passphrase mismatch, wrong purpose (renamed or swapped file),
    wrong key or passphrase, modified content.
    """
    k = _as_key(key)
    want = _purpose_bytes(purpose)
    b = bytes(blob)
    if len(b) < len(MAGIC) + 1 or b[: len(MAGIC)] != MAGIC:
        raise AtRestError(f"{name} is not an smpc encrypted file.")
    if b[len(MAGIC)] != VERSION:
        raise AtRestError(
            f"{name} uses encrypted-file format version {b[len(MAGIC)]}; this smpc reads "
            f"version {VERSION}."
        )
    pos = len(MAGIC) + 1
    truncated = AtRestError(f"{name} is truncated.")
    if len(b) < pos + 1:
        raise truncated
    kdf = b[pos]
    pos += 1
    if kdf == KDF_SCRYPT:
        if len(b) < pos + 3 + SALT_BYTES:
            raise truncated
        log2_n, r, p = b[pos], b[pos + 1], b[pos + 2]
        salt = b[pos + 3 : pos + 3 + SALT_BYTES]
        pos += 3 + SALT_BYTES
    elif kdf != KDF_KEYFILE:
        raise AtRestError(f"{name} names an unknown key derivation ({kdf}).")
    if len(b) < pos + CHECK_BYTES + 2:
        raise truncated
    check = b[pos : pos + CHECK_BYTES]
    (plen,) = struct.unpack(">H", b[pos + CHECK_BYTES : pos + CHECK_BYTES + 2])
    pos += CHECK_BYTES + 2
    if len(b) < pos + plen + NONCE_BYTES + TAG_BYTES:
        raise truncated
    stored = b[pos : pos + plen]
    pos += plen
    nonce = b[pos : pos + NONCE_BYTES]
    pos += NONCE_BYTES
    header, ct = b[:pos], b[pos:]

    if stored != want:
        shown = stored.decode("utf-8", "replace")
        raise AtRestError(
            f"{name} was encrypted for {shown!r}, not {purpose!r}: it was renamed or swapped "
            "for another file."
        )
    if kdf == KDF_SCRYPT:
        if not isinstance(k, PassphraseKey):
            raise AtRestError(f"{name} was encrypted with a passphrase, not with a key file.")
        _check_scrypt(log2_n, r, p, f"{name} asks for")
        master = _scrypt(k.passphrase, salt, log2_n, r, p)
    else:
        if not isinstance(k, KeyFileKey):
            raise AtRestError(f"{name} was encrypted with a key file, not with a passphrase.")
        master = k.key
    aes, expected_check = _subkeys(master)
    if not hmac.compare_digest(check, expected_check):
        what = "passphrase" if kdf == KDF_SCRYPT else "key"
        raise AtRestError(f"wrong {what} for {name} (or its header was modified).")
    try:
        return AESGCM(aes).decrypt(nonce, ct, header)
    except InvalidTag:
        raise AtRestError(
            f"{name} failed authentication: its content was modified or corrupted."
        ) from None


# ---------------------------------------------------------------------------------- files


def encrypt_file(
    path: str | os.PathLike[str],
    data: bytes,
    key: AnyKey,
    *,
    purpose: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Encrypt ``data`` into ``path`` (mode 0600, atomic). ``purpose`` defaults to the file name
    and must be given again, identically, to :func:`decrypt_file`."""
    p = Path(path).expanduser()
    blob = encrypt_bytes(data, key, purpose if purpose is not None else p.name)
    try:
        atomic_write(p, blob, 0o600, overwrite=overwrite)
    except FileExistsError:
        raise AtRestError(f"{str(p)!r} already exists; refusing to replace it.") from None
    except FileNotFoundError as exc:
        raise AtRestError(f"cannot write {str(p)!r}: {exc}.") from None
    return p


def decrypt_file(
    path: str | os.PathLike[str], key: AnyKey, *, purpose: str | None = None
) -> bytes:
    """Read and decrypt ``path``; ``purpose`` defaults to the file name (see :func:`decrypt_bytes`
    for the errors)."""
    p = Path(path).expanduser()
    try:
        blob = p.read_bytes()
    except OSError as exc:
        raise AtRestError(f"cannot read {str(p)!r}: {exc.strerror}.") from None
    return decrypt_bytes(
        blob, key, purpose if purpose is not None else p.name, name=repr(str(p))
    )
