"""Typed reading of a parsed JSON configuration document (:class:`_Reader`).

Every accessor checks the type and range of one field and raises
:class:`~parties.config.model.ConfigError` with one sentence naming the file and the field;
nothing is silently defaulted from a malformed value.  Used by :mod:`parties.config.reader`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from parties.config.model import (
    ConfigError,
)
from parties.pki.identity import (
    PKIError,
    normalize_fingerprint,
    validate_name,
)

_T = TypeVar("_T")


_MISSING = object()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )


def _got(value: Any) -> str:
    """How to show a wrong value in an error: JSON spelling for booleans, repr for scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return repr(value)
    return _type_name(value)


class _Reader:
    """Typed access to a parsed JSON document with errors that name the file and field."""

    def __init__(self, file: Path, check_files: bool) -> None:
        self.file = file
        self.base = file.parent
        self.check_files = check_files

    def error(self, fld: str | None, msg: str) -> ConfigError:
        if fld is None:
            return ConfigError(f"{self.file}: {msg}.", path=self.file)
        return ConfigError(f"{self.file}: field '{fld}' {msg}.", path=self.file, field=fld)

    def obj(self, value: Any, fld: str | None, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            where = "the top level" if fld is None else f"field '{fld}'"
            raise ConfigError(
                f"{self.file}: {where} must be a JSON object, got {_type_name(value)}.",
                path=self.file,
                field=fld,
            )
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                full = key if fld is None else f"{fld}.{key}"
                raise self.error(
                    full, f"is not a known field (expected one of: {', '.join(allowed)})"
                )
        return value

    def get(
        self,
        d: Mapping[str, Any],
        key: str,
        prefix: str | None,
        conv: Callable[[Any, str], _T],
        default: Any = _MISSING,
    ) -> _T:
        fld = key if prefix is None else f"{prefix}.{key}"
        if key not in d or (d[key] is None and default is not _MISSING):
            if default is _MISSING:
                raise ConfigError(
                    f"{self.file}: required field '{fld}' is missing.", path=self.file, field=fld
                )
            return default
        return conv(d[key], fld)

    # ---- converters: (value, field) -> typed value

    def string(self, v: Any, fld: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.error(fld, f"must be a non-empty string, got {_type_name(v)}")
        return v

    def name(self, v: Any, fld: str) -> str:
        s = self.string(v, fld)
        try:
            return validate_name(s)
        except PKIError:
            raise self.error(
                fld,
                f"must be a name of 1-63 letters, digits, '.' or '-' that starts and ends "
                f"with a letter or digit, got {s!r}",
            ) from None

    def host(self, v: Any, fld: str) -> str:
        s = self.string(v, fld)
        if any(c.isspace() for c in s) or "/" in s or s.startswith("["):
            raise self.error(fld, f"must be a bare host name or IP address, got {s!r}")
        return s

    def port(self, v: Any, fld: str, lo: int = 1) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= 65535:
            got = _got(v)
            raise self.error(fld, f"must be an integer from {lo} to 65535, got {got}")
        return v

    def listen_port(self, v: Any, fld: str) -> int:
        return self.port(v, fld, lo=0)

    def integer_range(self, lo: int, hi: int) -> Callable[[Any, str], int]:
        def conv(v: Any, fld: str) -> int:
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise self.error(fld, f"must be an integer from {lo} to {hi}, got {_got(v)}")
            return v

        return conv

    def integer_min(self, lo: int) -> Callable[[Any, str], int]:
        def conv(v: Any, fld: str) -> int:
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                got = _got(v)
                raise self.error(fld, f"must be an integer >= {lo}, got {got}")
            return v

        return conv

    def number(
        self, lo: float, hi: float, lo_open: bool, hi_open: bool
    ) -> Callable[[Any, str], float]:
        def conv(v: Any, fld: str) -> float:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if ok:
                f = float(v)
                ok = (f > lo if lo_open else f >= lo) and (f < hi if hi_open else f <= hi)
            if not ok:
                lb = "(" if lo_open else "["
                rb = ")" if hi_open else "]"
                got = _got(v)
                raise self.error(fld, f"must be a number in {lb}{lo:g}, {hi:g}{rb}, got {got}")
            return float(v)

        return conv

    def choice(self, options: Iterable[str]) -> Callable[[Any, str], str]:
        opts = tuple(options)

        def conv(v: Any, fld: str) -> str:
            if v not in opts:
                raise self.error(fld, f"must be one of {', '.join(opts)}, got {v!r}")
            return str(v)

        return conv

    def fingerprint(self, v: Any, fld: str) -> str:
        s = self.string(v, fld)
        try:
            return normalize_fingerprint(s)
        except PKIError:
            raise self.error(
                fld, f"must be a SHA-256 fingerprint of 64 hex digits, got {s!r}"
            ) from None

    def string_list(self, v: Any, fld: str) -> list[str]:
        if not isinstance(v, list):
            raise self.error(fld, f"must be a list of strings, got {_type_name(v)}")
        out: list[str] = []
        for i, item in enumerate(v):
            s = self.string(item, f"{fld}[{i}]")
            if s in out:
                raise self.error(f"{fld}[{i}]", f"repeats {s!r}")
            out.append(s)
        return out

    def path(self, v: Any, fld: str) -> Path:
        s = self.string(v, fld)
        p = Path(s).expanduser()
        if not p.is_absolute():
            p = self.base / p
        return Path(os.path.abspath(p))

    def existing_file(self, v: Any, fld: str) -> Path:
        p = self.path(v, fld)
        if self.check_files and not p.is_file():
            raise self.error(fld, f"names a file that does not exist: {p}")
        return p

    def _owner_only_file(self, v: Any, fld: str, what: str) -> Path:
        """An existing file that neither group nor others can read (``what`` names it)."""
        p = self.existing_file(v, fld)
        if self.check_files:
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077:
                raise self.error(
                    fld,
                    f"names {what} readable by group or others (mode {mode:04o}); "
                    f"run chmod 600 {p}",
                )
        return p

    def private_key_file(self, v: Any, fld: str) -> Path:
        return self._owner_only_file(v, fld, "a private key")

    def boolean(self, v: Any, fld: str) -> bool:
        if not isinstance(v, bool):
            raise self.error(fld, f"must be true or false, got {_got(v)}")
        return v

    def secret_file(self, v: Any, fld: str) -> Path:
        return self._owner_only_file(v, fld, "a key file")

    def password_file(self, v: Any, fld: str) -> Path:
        return self._owner_only_file(v, fld, "a password file")

    def db_path(self, v: Any, fld: str) -> Path:
        p = self.path(v, fld)
        if self.check_files and not p.parent.is_dir():
            raise self.error(fld, f"names a database whose directory does not exist: {p.parent}")
        return p


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found.", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}.", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}.", path=path
        ) from None


def _abs(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))
