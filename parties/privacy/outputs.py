"""At rest.  What the party writes to disk beside its database is encrypted with AES-256-GCM
(:mod:`parties.privacy.atrest`) under its at-rest key file (``at_rest_key`` in its config, default
``<database>.atrest-key``, created 0600 at first start):

* ``outputs/<session>.csv.enc`` -- predictions it receives as a data owner (columns ``row``, its
  key column if its policy declares one (``prediction-key``), and ``prediction``: empty for a
  selected row left out for a missing feature), bound to purpose
  ``predictions:<party>:<session>``; read them with :func:`read_output` or
  ``smpc outputs read --config PARTY.json SESSION``;
* ``models/<name>.json.enc`` -- models it owns, bound to ``model:<party>:<name>``
  (:func:`write_model`); a plaintext ``models/<name>.json`` an operator drops in is still read.

The audit log and the ledger hold metadata only (names, numbers, reasons; never values, shares,
keys or seeds) in the SQLite file ``database``; the audit log's MAC key is
``<database>.audit-key`` (:mod:`parties.privacy.audit`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from parties.config import PartyConfig
from parties.privacy import atrest
from smpc import linear
from smpc.errors import InputError

log = logging.getLogger("smpc.privacy")

_SESSION_RE = re.compile(r"^[0-9a-f]{16,64}\Z")


_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def load_at_rest_key(cfg: PartyConfig, *, create: bool = False) -> atrest.KeyFileKey:
    """The party's at-rest key (:attr:`PartyConfig.at_rest_key_path`).

    With ``create`` a missing key at the *default* path is created (0600); a key named
    explicitly in the config is never created (a missing one is an error: creating a new key
    would silently orphan everything encrypted under the old one).
    """
    path = cfg.at_rest_key_path
    if create and cfg.at_rest_key is None and not path.exists():
        try:
            atrest.create_key_file(path)
        except atrest.AtRestError:
            if not path.exists():
                raise
    return atrest.load_key_file(path)


def outputs_dir(cfg: PartyConfig) -> Path:
    """Where a data owner's predictions are written: ``<database dir>/outputs``."""
    return cfg.database.parent / "outputs"


def models_dir(cfg: PartyConfig) -> Path:
    """Where a party's models live: ``<database dir>/models``."""
    return cfg.database.parent / "models"


def output_path(cfg: PartyConfig, session_id: str) -> Path:
    """``outputs/<session>.csv.enc`` of ``session_id`` (checked to be a session id)."""
    if not isinstance(session_id, str) or not _SESSION_RE.match(session_id):
        raise InputError(f"{session_id!r:.80} is not a session id (16-64 lowercase hex digits)")
    return outputs_dir(cfg) / f"{session_id}.csv.enc"


def _output_purpose(party: str, session_id: str) -> str:
    return f"predictions:{party}:{session_id}"


def write_predictions(cfg: PartyConfig, key: atrest.KeyFileKey, session_id: str,
                      row_numbers: Sequence[int] | np.ndarray,
                      predictions: Sequence[float] | np.ndarray, *,
                      key_column: str | None = None, keys: Sequence[str] | None = None,
                      left_out: Sequence[int] | np.ndarray = ()) -> Path:
    """Encrypt a data owner's predictions to ``outputs/<session>.csv.enc`` (0600, atomic,
    never replacing a file): CSV with ``row`` (1-based row of its table), the key column
    ``key_column`` when given (``keys``: one cell per predicted row, then one per ``left_out``
    row) and ``prediction``; the ``left_out`` rows (selected, a feature missing) have an empty
    prediction.  Rows in table order."""
    path = output_path(cfg, session_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    numbers = [int(i) for i in row_numbers]
    cells = [repr(float(v)) for v in predictions]
    if len(cells) != len(numbers):
        raise ValueError("one prediction per row number")
    gaps = [int(i) for i in left_out]
    numbers, cells = numbers + gaps, cells + [""] * len(gaps)
    if key_column is not None and (keys is None or len(keys) != len(numbers)):
        raise ValueError("one key per row (predicted, then left out)")
    key_cells = list(keys) if key_column is not None and keys is not None else None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", key_column, "prediction"] if key_column else ["row", "prediction"])
    for k in sorted(range(len(numbers)), key=numbers.__getitem__):
        writer.writerow([numbers[k], key_cells[k], cells[k]] if key_cells is not None
                        else [numbers[k], cells[k]])
    data = out.getvalue().encode()
    return atrest.encrypt_file(path, data, key, purpose=_output_purpose(cfg.name, session_id),
                               overwrite=False)


def read_output(cfg: PartyConfig | str | os.PathLike[str], session: str | os.PathLike[str]
                ) -> bytes:
    """Decrypt a predictions file of a data owner: ``cfg`` is its :class:`PartyConfig` or the
    path of its config file; ``session`` a session id or the path the analyst was given
    (``.../outputs/<session>.csv.enc``).  Returns the CSV bytes (``row,prediction``)."""
    if not isinstance(cfg, PartyConfig):
        from parties.config import load_party_config

        cfg = load_party_config(cfg, check_files=False)
    sid = Path(str(session)).name.removesuffix(".csv.enc")
    path = output_path(cfg, sid)
    if not path.is_file():
        raise InputError(f"{cfg.name} has no predictions for session {sid} ({path} not found)")
    key = load_at_rest_key(cfg)
    return atrest.decrypt_file(path, key, purpose=_output_purpose(cfg.name, sid))


def _model_purpose(party: str, name: str) -> str:
    return f"model:{party}:{name}"


def write_model(directory: Path, party: str, name: str, model: linear.LinearModel,
                key: atrest.KeyFileKey) -> Path:
    """Encrypt ``model`` to ``<directory>/<name>.json.enc`` (0600, atomic)."""
    if not _MODEL_NAME_RE.match(name):
        raise InputError(f"{name!r} is not a valid model name")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = (json.dumps(model.to_json(), indent=2) + "\n").encode()
    return atrest.encrypt_file(directory / f"{name}.json.enc", data, key,
                               purpose=_model_purpose(party, name), overwrite=True)


def load_models(directory: Path, key: atrest.KeyFileKey | None = None, party: str = ""
                ) -> dict[str, linear.LinearModel]:
    """Every valid model in ``directory``: ``<name>.json.enc`` (encrypted, needs ``key``) and
    plaintext ``<name>.json``; the encrypted one wins.  Invalid files are logged, skipped."""
    out: dict[str, linear.LinearModel] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        if not _MODEL_NAME_RE.match(path.stem):
            continue
        try:
            out[path.stem] = linear.LinearModel.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, InputError) as exc:
            log.warning("skipping model file %s: %s", path.name, exc)
    for path in sorted(directory.glob("*.json.enc")):
        name = path.name.removesuffix(".json.enc")
        if not _MODEL_NAME_RE.match(name):
            continue
        if key is None:
            log.warning("skipping encrypted model %s: no at-rest key", path.name)
            continue
        try:
            doc = json.loads(atrest.decrypt_file(path, key, purpose=_model_purpose(party, name)))
            out[name] = linear.LinearModel.from_json(doc)
        except (OSError, ValueError, InputError) as exc:
            log.warning("skipping model file %s: %s", path.name, exc)
    return out
