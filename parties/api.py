"""The Python API: joint statistics and inference on a federation, as an analyst.

The names mirror Python's :mod:`statistics` module::

    from parties.api import Federation

    dp = Privacy(epsilon=0.5, delta=1e-6, bounds={"age": (0, 120)})
    with Federation.local(["a.csv", "b.csv", "c.csv"]) as fed:      # nodes on 127.0.0.1
        fed.mean("age", privacy=dp)           # differentially private: the default policy

    # exact answers: an explicit opt-in of each party (init_federation's allow_exact)
    with Federation.local(["a.csv", "b.csv", "c.csv"], allow_exact=True) as fed:
        fed.mean("age")                                              # -> float
        fed.stdev(["age", "bmi"], backend="ckks", where="age > 40")  # -> [float, float]
        fed.linear_regression(["age", "bmi"], "sbp")                 # -> LinearRegression

    fed = Federation.open("path/to/federation")  # an already running federation

Every call runs one secure computation (see :mod:`smpc.stats` for what it
reveals); ``backend`` is ``"ss"`` (secret sharing) or ``"ckks"`` (homomorphic
encryption, the key stays in this process); ``where`` is a row filter each
party applies to its own rows (:mod:`parties.data.filters`); ``privacy=Privacy(...)``
asks for differential privacy (distributed noise, charged to each party's budget).  The
full :class:`~smpc.stats.StatResult` of the latest call is in
:attr:`Federation.last_result`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from parties.analyst.client import Client, Prediction
from parties.federation import local as federation_mod
from smpc import dp
from smpc.errors import InputError
from smpc.names import Backend, Statistic, parse
from smpc.stats import StatResult, StatSpec

__all__ = ["Federation", "LinearRegression", "Prediction", "Privacy"]

Columns = str | Sequence[str]


class LinearRegression(NamedTuple):
    """Least-squares fit: ``slope`` (one per feature), ``intercept`` and R^2."""

    slope: list[float]
    intercept: float
    r2: float


def _cols(columns: Columns) -> tuple[tuple[str, ...], bool]:
    if isinstance(columns, str):
        return (columns,), True
    cols = tuple(columns)
    return cols, False


def _one(values: Any, single: bool) -> Any:
    return values[0] if single else values


class Federation:
    """An analyst's handle on a federation (see the module docstring)."""

    #: What the statistic methods do with missing values: ``"skip"`` (like pandas: each
    #: column's missing values are left out, ``cov`` / ``corr`` / ``linreg`` use complete rows;
    #: the counts are in ``last_result.details["missing"]``) or ``"error"`` (refused).
    missing: str = "skip"

    def __init__(self, client: Client, parties: Sequence[str] | None = None, *,
                 allow_partial: bool = False) -> None:
        self.client = client
        self.parties = list(parties) if parties else None
        #: proceed without the parties that decline a statistic (their policies refuse it);
        #: ``last_result.details["parties"]`` / ``["declined"]`` say who took part and who not
        self.allow_partial = bool(allow_partial)
        self.last_result: StatResult | None = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, parties: Sequence[str] | None = None,
             timeout: float = 120.0, allow_partial: bool = False) -> Federation:
        """Connect, as its analyst, to the running federation in ``directory``
        (``allow_partial``: see :meth:`compute`)."""
        return cls(Client(directory, timeout=timeout), parties, allow_partial=allow_partial)

    @classmethod
    @contextlib.contextmanager
    def local(cls, data_files: Sequence[str | os.PathLike[str]], *,
              models: Mapping[str, str | os.PathLike[str]] | None = None,
              directory: str | os.PathLike[str] | None = None,
              parties: Sequence[str] | None = None, **init_kwargs: Any) -> Iterator[Federation]:
        """Start a local federation (one party per data file) for the ``with`` block.

        ``models`` maps a party (named after its file's stem) to the model JSON
        it owns.  ``init_kwargs`` go to :func:`parties.federation.local.init_federation`:
        its parties answer only with differential privacy unless ``allow_exact=True``.
        Nodes run as background processes on 127.0.0.1 and are stopped on exit; a
        temporary directory is removed unless ``directory`` is given.
        """
        with federation_mod.local_federation(data_files, models=models, directory=directory,
                                             **init_kwargs) as layout:
            fed = cls(Client(layout.directory), parties)
            try:
                yield fed
            finally:
                fed.close()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the general call --------------------------------------------------------------------

    def compute(self, spec: StatSpec, where: str | None = None, *,
                allow_partial: bool | None = None) -> StatResult:
        """Run any :class:`~smpc.stats.StatSpec`; returns the full result.  ``allow_partial``
        (default: the federation's): proceed without the parties that decline
        (:meth:`parties.analyst.client.Client.compute`); the result's ``details["parties"]``
        and ``details["declined"]`` name who took part and who declined."""
        partial = self.allow_partial if allow_partial is None else allow_partial
        self.last_result = self.client.compute(spec, where, parties=self.parties,
                                               allow_partial=partial)
        return self.last_result

    def _stat(self, statistic: str, columns: Columns, *, backend: str, where: str | None,
              privacy: Privacy | None, **extra: Any) -> tuple[StatResult, bool]:
        cols, single = _cols(columns)
        request = privacy.request() if privacy is not None else None
        spec = StatSpec(Statistic(statistic), cols, backend=_backend(backend), dp=request,
                        missing=self.missing, **extra)
        return self.compute(spec, where), single

    # -- statistics ----------------------------------------------------------------------------

    def count(self, column: str, *, backend: str = "ss", where: str | None = None,
              privacy: Privacy | None = None) -> int:
        """Number of present values of ``column`` in the rows matching ``where``, over all
        parties (with :attr:`missing` ``"error"``: of rows)."""
        result, _ = self._stat("count", column, backend=backend, where=where, privacy=privacy)
        return int(result.value)

    def sum(self, columns: Columns, *, backend: str = "ss", where: str | None = None,
            privacy: Privacy | None = None) -> Any:
        result, single = self._stat("sum", columns, backend=backend, where=where,
                                    privacy=privacy)
        return _one(result.value, single)

    def mean(self, columns: Columns, *, backend: str = "ss", where: str | None = None,
             privacy: Privacy | None = None) -> Any:
        result, single = self._stat("mean", columns, backend=backend, where=where,
                                    privacy=privacy)
        return _one(result.value, single)

    def variance(self, columns: Columns, *, backend: str = "ss", where: str | None = None,
                 ddof: int = 1, privacy: Privacy | None = None) -> Any:
        """Sample variance (``ddof=1``, as :func:`statistics.variance`) or population (0)."""
        result, single = self._stat("var", columns, backend=backend, where=where,
                                    privacy=privacy, ddof=ddof)
        return _one(result.value, single)

    def stdev(self, columns: Columns, *, backend: str = "ss", where: str | None = None,
              ddof: int = 1, privacy: Privacy | None = None) -> Any:
        result, single = self._stat("std", columns, backend=backend, where=where,
                                    privacy=privacy, ddof=ddof)
        return _one(result.value, single)

    def covariance(self, columns: Sequence[str], *, backend: str = "ss",
                   where: str | None = None, privacy: Privacy | None = None) -> list[list[float]]:
        """Sample covariance matrix of two or more columns."""
        result, _ = self._stat("cov", columns, backend=backend, where=where, privacy=privacy)
        return result.value

    def correlation(self, columns: Sequence[str], *, backend: str = "ss",
                    where: str | None = None, privacy: Privacy | None = None) -> list[list[float]]:
        """Pearson correlation matrix of two or more columns."""
        result, _ = self._stat("corr", columns, backend=backend, where=where, privacy=privacy)
        return result.value

    def histogram(self, column: str, edges: Sequence[float], *, backend: str = "ss",
                  where: str | None = None, privacy: Privacy | None = None) -> list[int]:
        """Counts per bin over public ``edges`` (values outside are in ``last_result.details``)."""
        result, _ = self._stat("histogram", column, backend=backend, where=where,
                               privacy=privacy, edges=tuple(edges))
        return result.value[0]

    def quantiles(self, column: str, probabilities: Sequence[float] = (0.25, 0.5, 0.75), *,
                  bounds: tuple[float, float], resolution: int = 1024, backend: str = "ss",
                  where: str | None = None, privacy: Privacy | None = None) -> list[float]:
        """Quantiles within one bin ``(hi - lo) / resolution`` of the inverted-CDF ones."""
        result, _ = self._stat("quantiles", column, backend=backend, where=where,
                               privacy=privacy, probabilities=tuple(probabilities),
                               bounds=tuple(bounds), resolution=resolution)
        return result.value[0]

    def linear_regression(self, features: Columns, target: str, *, backend: str = "ss",
                          where: str | None = None, privacy: Privacy | None = None
                          ) -> LinearRegression:
        """Least-squares fit of ``target`` on ``features`` (with an intercept)."""
        cols, _ = _cols(features)
        result = self.compute(StatSpec(Statistic.LINREG, cols, target=target,
                                       backend=_backend(backend), missing=self.missing,
                                       dp=privacy.request() if privacy else None), where)
        return LinearRegression(result.value["coefficients"], result.value["intercept"],
                                result.details.get("r2", float("nan")))

    # -- inference --------------------------------------------------------------------------

    def predict(self, data_owner: str, model_owner: str, *, model: str | None = None,
                backend: str = "ss", where: str | None = None, output: str = "prediction",
                **options: Any) -> Prediction:
        """Apply ``model_owner``'s model to ``data_owner``'s rows.

        Only the data owner learns the predictions (stored on its host); the
        returned :class:`~parties.analyst.client.Prediction` says how many and where.
        """
        return self.client.predict(data_owner, model_owner, model=model, backend=backend,
                                   where=where, output=output, **options)


def _backend(value: str) -> Backend:
    backend = parse(Backend, value)
    if backend is None:
        raise InputError(f"unknown backend {value!r}; choose 'ss' or 'ckks'")
    return backend


@dataclass(frozen=True)
class Privacy:
    """Ask for differential privacy: ``epsilon`` (with ``delta``) or ``rho`` (zCDP), and the
    public clipping ``bounds`` per column (missing ones are filled from each party's policy).

    ``min_honest``: size the noise shares so the guarantee holds while that many parties add
    theirs (default: all).  See :class:`smpc.dp.DPRequest`, which this builds.
    """

    epsilon: float | None = None
    delta: float | None = None
    rho: float | None = None
    bounds: Mapping[str, Sequence[float]] | None = None
    min_honest: int | None = None

    def request(self) -> dp.DPRequest:
        """The core's :class:`~smpc.dp.DPRequest` (an InputError if the options are unusable)."""
        if self.epsilon is None and self.rho is None:
            raise InputError("differential privacy needs epsilon (with delta) or rho")
        return dp.DPRequest(
            epsilon=self.epsilon, delta=self.delta, rho=self.rho,
            bounds={k: (float(v[0]), float(v[1])) for k, v in (self.bounds or {}).items()},
            min_honest=self.min_honest)
