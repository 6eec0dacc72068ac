"""``smpc model from-sklearn``: a fitted scikit-learn model to a model file (JSON).

Register with ``add_model_parser(sub)`` (``sub``: the ``add_subparsers()`` object of the ``smpc``
parser).  The file it writes is what ``smpc federation init --model PARTY=model.json`` and a model
owner's ``models/`` directory take (:class:`smpc.linear.LinearModel`, with its
:class:`~smpc.linear.Scaler` when the model was trained after a ``StandardScaler``).

**Loading a pickle or joblib file runs code**: convert only a file you made yourself (or trust
as much as a program); in Python, pass the fitted estimator to
:func:`smpc.sklearn_models.model_from_sklearn` instead and nothing is unpickled.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from smpc.errors import InputError

__all__ = ["add_model_parser", "cmd_from_sklearn", "load_estimator"]

_WARNING = ("loading a pickle/joblib file runs code: convert only your own files "
            "(in Python, pass the fitted estimator to smpc.model_from_sklearn instead)")


def add_model_parser(sub: Any) -> None:
    """``smpc model from-sklearn MODEL --out FILE [--scaler SCALER] [--features ...]``."""
    model = sub.add_parser("model", help="model files: import a scikit-learn model")
    msub = model.add_subparsers(dest="model_command", required=True)
    conv = msub.add_parser(
        "from-sklearn", help="a fitted LogisticRegression / LinearRegression (optionally in a "
        "Pipeline after a StandardScaler) to a model file; " + _WARNING,
        description="Convert a fitted scikit-learn model to an smpc model file. " + _WARNING)
    conv.add_argument("estimator", type=Path, help="a .pkl or .joblib file of the fitted "
                      "estimator or pipeline (your own file: loading it runs code)")
    conv.add_argument("--out", required=True, type=Path, help="the model file to write")
    conv.add_argument("--scaler", type=Path, help="a separately fitted StandardScaler "
                      "(.pkl/.joblib) the model was trained after")
    conv.add_argument("--features", nargs="+", help="feature names in the model's order "
                      "(default: the names it was fitted with)")
    conv.add_argument("--force", action="store_true", help="replace an existing --out file")
    conv.add_argument("--json", action="store_true", help="machine-readable output")
    conv.set_defaults(func=cmd_from_sklearn)


def load_estimator(path: Path) -> Any:
    """Unpickle ``path`` (joblib if it ends in ``.joblib``).  Runs code: the operator's own file
    only.  Errors name the file, never its content."""
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    try:
        if path.suffix == ".joblib":
            try:
                import joblib  # type: ignore[import-untyped]
            except ImportError:
                raise InputError("reading a .joblib file needs joblib (pip install "
                                 "scikit-learn)") from None
            return joblib.load(path)
        with path.open("rb") as fh:
            return pickle.load(fh)  # noqa: S301 -- the operator's own file (documented)
    except ModuleNotFoundError as exc:
        raise InputError(f"{path} needs the module {exc.name!r} to load (pip install "
                         "scikit-learn)") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise InputError(f"{path} is not a pickled scikit-learn model "
                         f"({type(exc).__name__})") from None


def cmd_from_sklearn(args: argparse.Namespace) -> int:
    """Convert, validate (the model file is read back as a model owner would), write atomically."""
    from smpc.linear import LinearModel
    from smpc.sklearn_models import model_from_sklearn

    estimator = load_estimator(args.estimator)
    scaler = None if args.scaler is None else load_estimator(args.scaler)
    model = model_from_sklearn(estimator, args.features, scaler=scaler)
    doc = model.to_json()
    LinearModel.from_json(json.loads(json.dumps(doc)))  # what a model owner will load
    out: Path = args.out
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    summary = {"model": str(out), "kind": str(model.kind), "features": list(model.features),
               "scaler": model.scaler is not None}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{model.kind} model of {len(model.features)} features"
              f"{' with its scaler' if model.scaler is not None else ''} written to {out}")
    return 0
