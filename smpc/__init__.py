"""smpc: secure joint statistics and model inference across organisations that may not pool data.

One namespace for the user::

    import smpc

    with smpc.Federation.local(["a.csv", "b.csv", "c.csv"]) as fed:
        fed.mean("age", backend="ckks")

``smpc.Federation`` (the analyst's API), :class:`StatResult`, :class:`LinearRegression`,
:class:`Prediction`, the specs and the shared names are attributes of this package, resolved
lazily on first use (PEP 562): ``import smpc`` or ``import smpc.sharing`` loads neither the
runtime nor gRPC -- only asking for a runtime name (``Federation``, ``LinearRegression``,
``Prediction``, ``Privacy``) imports :mod:`parties.api`.

Below the namespace, the package is the computation core: fixed point, secret sharing, Beaver
products, CKKS, differential privacy and the protocols, each written once as role functions
over a :class:`~smpc.transport.Transport`.  The core is pure computation -- no sockets, no
files -- and never imports the runtime (``parties/``), which carries its messages between
hosts; the one exception is the lazy lookup in :func:`__getattr__` below.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

# name -> core module that defines it (imported on first use)
_CORE: dict[str, str] = {
    "StatSpec": "smpc.stats",
    "StatResult": "smpc.stats",
    "DPRequest": "smpc.dp",
    "PrivacyCost": "smpc.dp",
    "LinearModel": "smpc.linear",
    "InferenceSpec": "smpc.linear",
    "Scaler": "smpc.linear",
    "model_from_sklearn": "smpc.sklearn_models",
    "Backend": "smpc.names",
    "Statistic": "smpc.names",
    "ModelKind": "smpc.names",
    "InferenceOutput": "smpc.names",
    "SmpcError": "smpc.errors",
    "InputError": "smpc.errors",
    "ProtocolError": "smpc.errors",
}
# names of the analyst API, which lives in the runtime (parties.api) and needs gRPC
_RUNTIME: tuple[str, ...] = ("Federation", "LinearRegression", "Prediction", "Privacy")

__all__ = ["__version__", *_RUNTIME, *_CORE]


def _version() -> str:
    """The installed distribution's version, else the one in the source tree's pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version("smpc")
    except metadata.PackageNotFoundError:
        pass
    try:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    except OSError:
        return "0+unknown"
    project = re.search(r"(?ms)^\[project\]\s*$(.*?)(?=^\[|\Z)", text)
    found = project and re.search(r'(?m)^version\s*=\s*"([^"]+)"', project.group(1))
    return found.group(1) if found else "0+unknown"


def __getattr__(name: str) -> Any:
    """Resolve the namespace's names on first use (PEP 562) and cache them in the module."""
    if name in _RUNTIME:
        from parties import api  # the runtime, and only when one of its names is asked for

        value = getattr(api, name)
    elif name in _CORE:
        value = getattr(importlib.import_module(_CORE[name]), name)
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module 'smpc' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
