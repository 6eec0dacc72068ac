"""Encryption at rest: round trips with a key file and a passphrase, and a clear one-sentence error
for a wrong key or passphrase, a modified byte, a swapped file, and malformed files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from parties.privacy import atrest
from parties.privacy.atrest import (
    AtRestError,
    KeyFileKey,
    PassphraseKey,
    create_key_file,
    decrypt_file,
    encrypt_file,
    load_key_file,
)
from smpc.errors import InputError

DATA = b'{"session": "s1", "mean": 41.25, "n": 1234}\n' * 20


def one_sentence(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg.endswith("."), msg
    assert isinstance(exc, InputError)
    return msg


@pytest.fixture
def key(tmp_path: Path) -> KeyFileKey:
    return load_key_file(create_key_file(tmp_path / "atrest.key"))


def test_key_file_round_trip(tmp_path: Path, key: KeyFileKey) -> None:
    kp = tmp_path / "atrest.key"
    assert stat.S_IMODE(os.stat(kp).st_mode) == 0o600 and len(kp.read_bytes()) == 32
    out = encrypt_file(tmp_path / "result-s1.json.enc", DATA, key)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    blob = out.read_bytes()
    assert blob.startswith(b"SMPCENC\x01\x01") and DATA[:20] not in blob
    assert len(blob) == len(DATA) + 9 + 8 + 2 + len(b"result-s1.json.enc") + 12 + 16
    assert decrypt_file(out, key) == DATA
    assert decrypt_file(out, kp.read_bytes()) == DATA  # raw 32 bytes work too
    # fresh nonce every time: same data, different ciphertext
    again = encrypt_file(tmp_path / "result-s1.json.enc", DATA, key).read_bytes()
    assert again != blob and decrypt_file(out, key) == DATA
    raw = kp.read_bytes()
    assert raw.hex() not in repr(key) and repr(raw) not in repr(key)  # the key never prints


def test_key_file_is_never_replaced_and_must_be_private(tmp_path: Path) -> None:
    kp = create_key_file(tmp_path / "k")
    original = kp.read_bytes()
    with pytest.raises(AtRestError, match="already exists"):
        create_key_file(kp)
    assert kp.read_bytes() == original
    kp.chmod(0o640)
    with pytest.raises(AtRestError, match="chmod 600") as ei:
        load_key_file(kp)
    one_sentence(ei.value)
    short = tmp_path / "short"
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(AtRestError, match="must hold 32 bytes"):
        load_key_file(short)


def test_passphrase_round_trip(tmp_path: Path) -> None:
    pw = PassphraseKey("correct horse battery staple")
    out = encrypt_file(tmp_path / "model.enc", DATA, pw)
    blob = out.read_bytes()
    assert blob[8] == atrest.KDF_SCRYPT and tuple(blob[9:12]) == (15, 8, 1)  # stored params
    assert decrypt_file(out, PassphraseKey("correct horse battery staple")) == DATA
    # a fresh salt per file: the same passphrase gives different key-check values
    other = encrypt_file(tmp_path / "model2.enc", DATA, pw).read_bytes()
    assert blob[12:28] != other[12:28] and blob[28:36] != other[28:36]
    assert "correct horse" not in repr(pw)


def test_wrong_passphrase_and_wrong_key(tmp_path: Path, key: KeyFileKey) -> None:
    p = encrypt_file(tmp_path / "a.enc", DATA, PassphraseKey("right one"))
    with pytest.raises(AtRestError, match="wrong passphrase") as ei:
        decrypt_file(p, PassphraseKey("wrong one"))
    assert str(p) in one_sentence(ei.value)

    k = encrypt_file(tmp_path / "b.enc", DATA, key)
    with pytest.raises(AtRestError, match="wrong key") as ei:
        decrypt_file(k, KeyFileKey(os.urandom(32)))
    one_sentence(ei.value)
    with pytest.raises(AtRestError, match="encrypted with a key file, not with a passphrase"):
        decrypt_file(k, PassphraseKey("right one"))
    with pytest.raises(AtRestError, match="encrypted with a passphrase, not with a key file"):
        decrypt_file(p, key)


@pytest.mark.parametrize("where", ["first", "middle", "tag"])
def test_tampered_ciphertext_is_refused(tmp_path: Path, key: KeyFileKey, where: str) -> None:
    p = encrypt_file(tmp_path / "r.enc", DATA, key)
    blob = bytearray(p.read_bytes())
    header = 9 + 8 + 2 + len(b"r.enc") + 12
    i = {"first": header, "middle": header + len(DATA) // 2, "tag": len(blob) - 1}[where]
    blob[i] ^= 0x01
    p.write_bytes(bytes(blob))
    with pytest.raises(AtRestError, match="was modified or corrupted") as ei:
        decrypt_file(p, key)
    one_sentence(ei.value)


def test_tampered_passphrase_file_is_refused(tmp_path: Path) -> None:
    pw = PassphraseKey("pw")
    p = encrypt_file(tmp_path / "r.enc", DATA, pw)
    blob = bytearray(p.read_bytes())
    blob[-20] ^= 0x80
    p.write_bytes(bytes(blob))
    with pytest.raises(AtRestError, match="modified"):
        decrypt_file(p, pw)


def test_swapped_file_is_refused_by_its_associated_data(tmp_path: Path, key: KeyFileKey) -> None:
    a = encrypt_file(tmp_path / "result-s1.enc", b"result of s1", key)
    encrypt_file(tmp_path / "result-s2.enc", b"result of s2", key)
    # an attacker replaces s2's result with s1's
    (tmp_path / "result-s2.enc").write_bytes(a.read_bytes())
    with pytest.raises(AtRestError, match="renamed or swapped") as ei:
        decrypt_file(tmp_path / "result-s2.enc", key)
    msg = one_sentence(ei.value)
    assert "'result-s1.enc'" in msg and "'result-s2.enc'" in msg

    # ... and also rewrites the purpose in the header: the tag covers it
    blob = a.read_bytes().replace(b"result-s1.enc", b"result-s2.enc")
    (tmp_path / "result-s2.enc").write_bytes(blob)
    with pytest.raises(AtRestError, match="modified"):
        decrypt_file(tmp_path / "result-s2.enc", key)

    # an explicit purpose must match on both sides
    encrypt_file(tmp_path / "x.enc", b"k", key, purpose="model:risk")
    assert decrypt_file(tmp_path / "x.enc", key, purpose="model:risk") == b"k"
    with pytest.raises(AtRestError, match="renamed or swapped"):
        decrypt_file(tmp_path / "x.enc", key, purpose="model:other")


def test_malformed_files(tmp_path: Path, key: KeyFileKey) -> None:
    p = tmp_path / "f.enc"
    p.write_bytes(b"plain text, not encrypted")
    with pytest.raises(AtRestError, match="not an smpc encrypted file") as ei:
        decrypt_file(p, key)
    one_sentence(ei.value)

    good = encrypt_file(p, DATA, key).read_bytes()
    p.write_bytes(good[:30])
    with pytest.raises(AtRestError, match="truncated"):
        decrypt_file(p, key)
    p.write_bytes(good[:7] + b"\x09" + good[8:])
    with pytest.raises(AtRestError, match="format version 9"):
        decrypt_file(p, key)

    # a header asking scrypt for absurd work is refused before any work is done
    blob = bytearray(encrypt_file(p, DATA, PassphraseKey("pw", log2_n=10)).read_bytes())
    blob[9] = 40
    p.write_bytes(bytes(blob))
    with pytest.raises(AtRestError, match="outside the allowed range"):
        decrypt_file(p, PassphraseKey("pw"))

    with pytest.raises(AtRestError, match="cannot read"):
        decrypt_file(tmp_path / "missing.enc", key)


def test_writes_are_atomic_and_refuse_overwrite_when_asked(tmp_path: Path, key: KeyFileKey) -> None:
    p = encrypt_file(tmp_path / "r.enc", b"first", key)
    with pytest.raises(AtRestError, match="already exists"):
        encrypt_file(p, b"second", key, overwrite=False)
    assert decrypt_file(p, key) == b"first"
    encrypt_file(p, b"second", key)
    assert decrypt_file(p, key) == b"second"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["atrest.key", "r.enc"]  # no temp files
    with pytest.raises(AtRestError):
        KeyFileKey(b"short")
    with pytest.raises(AtRestError):
        PassphraseKey("")
