"""The protocol roles of a joint statistic: data party, recipient, aggregator, key holder.

Guarantees: each role runs the passes of :mod:`smpc.stats` over a
:class:`~smpc.transport.Transport`; under DP every party clips and adds its noise share before
anything is encoded or encrypted.  Reveals: to the recipient the summed aggregates of each pass;
to the parties (two-pass statistics) the public shift and count and, for exact answers, the
public scale of the moment pass (:mod:`smpc.stats.bounds`: a power of two per column after a
spread pass; none under DP); nothing about one party's rows (:mod:`smpc.aggregate` states the
backend assumptions).  Every result carries its error bound (:func:`smpc.stats.bounds.attach`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard

import numpy as np

from smpc import aggregate, dp
from smpc.ckks import KeyHolder
from smpc.encoding import FixedPoint
from smpc.errors import InputError
from smpc.names import Backend
from smpc.stats import bounds
from smpc.stats.finishing import finish, shift_from_pass1
from smpc.stats.local import (
    moment_divisor,
    pass1_length,
    pass2_length,
    suppress_small_cells,
)
from smpc.stats.rowsource import LocalRows, local_rows
from smpc.stats.spec import StatResult, StatSpec
from smpc.transport import Transport, pack_json, unpack_json

__all__ = [
    "run_aggregator_ckks",
    "run_keyholder_ckks",
    "run_party",
    "run_recipient_ss",
    "simulate",
]


def run_party(
    t: Transport,
    spec: StatSpec,
    rows: np.ndarray | LocalRows,
    *,
    parties: Sequence[str],
    recipient: str,
    tag: str,
    public_context: object = None,
    row_cap: int | None = None,
    min_cell_size: int = 0,
) -> None:
    """One data party's role in a joint statistic.

    ``recipient`` is the node that learns the summed aggregates: on ``ss`` the
    node that reconstructs (normally the coordinator); on ``ckks`` the
    aggregator, which forwards the encrypted sum to the key holder.
    ``public_context`` is the key holder's public TenSEAL context (``ckks``).

    With ``spec.dp`` the party clips its rows to the public bounds and adds
    its share of distributed discrete Gaussian noise to each contribution
    before it is encoded or encrypted (:mod:`smpc.dp`), so no node ever sees
    the exact aggregate.

    ``row_cap`` (under DP, on ``ss``): a public bound on this party's rows that does not depend
    on the filter (a runtime passes its table's total row count).  With it, pass 2 is refused
    up front, on public quantities only (:func:`smpc.dp.check_pass_range`: the public shift
    and divisor, the bounds, ``row_cap``), when the clipped moments plus noise could leave the
    ring's range -- never by the encoding's own check on the exact aggregate; pass 1 likewise
    (a runtime checks it before the session starts too).

    ``min_cell_size`` (exact requests only; refused with ``spec.dp``): the party sends every
    histogram or fine-histogram cell holding fewer of its rows than this as 0
    (:func:`~smpc.stats.local.suppress_small_cells`), so no released cell is in
    ``1 .. min_cell_size - 1``.

    ``rows``: the party's selected rows as a matrix (``n x k``, NaN = missing) or any
    :class:`~smpc.stats.rowsource.LocalRows` (an engine that computes the local aggregates
    itself, e.g. in SQL, so the rows never need to fit in memory).

    The role checks :meth:`~smpc.transport.Transport.check_cancelled` before and after
    its local aggregation, between chunks of noise draws and before each message.
    """
    t.check_cancelled()  # pragma: no mutate (liveness only)
    source = local_rows(spec, rows)
    plan = spec.noise_plan(len(parties))
    if plan is not None and row_cap is not None:
        dp.check_pass_range(plan, 1, row_cap, frac_bits=spec.codec.frac_bits)
    if plan is not None and min_cell_size > 1:
        # suppression is a data-dependent change of a cell by up to min_cell_size rows: it
        # would void the noise plan's sensitivity, and DP needs no suppression
        raise InputError("small cells are suppressed in exact answers only, not under DP")
    clip = plan.bounds if plan is not None else None
    values = suppress_small_cells(spec, source.pass1(spec, clip), min_cell_size)
    t.check_cancelled()  # pragma: no mutate (liveness only)
    noise = None if plan is None else dp.party_noise(plan, 1, values.size, spec.backend,
                                                     check=t.check_cancelled)
    _contribute(t, spec, values, noise, plan, 1, parties, recipient, f"{tag}/p1",
                public_context, spec.codec)
    del values, noise
    if spec.passes == 2:
        doc = unpack_json(t.recv(recipient, f"{tag}/shift"))
        raw_shift, raw_total = (doc.get("shift"), doc.get("n")) if isinstance(doc, dict) else (
            None, None)
        # only JSON numbers: text, booleans or nulls are a deviating recipient's, not numbers
        if not (isinstance(raw_shift, list) and all(_is_number(v) for v in raw_shift)
                and _is_number(raw_total)):
            raise InputError(f"{recipient} sent a malformed shift for {tag!r}")
        shift = np.asarray(raw_shift, dtype=np.float64)
        total = float(raw_total)
        if (shift.shape != (len(spec.value_columns),) or not np.all(np.isfinite(shift))
                or not total >= 1):
            raise InputError(f"{recipient} sent a malformed shift for {tag!r}")
        if plan is not None and row_cap is not None:
            dp.check_pass_range(plan, 2, row_cap, frac_bits=spec.moment_codec.frac_bits,
                                divisor=moment_divisor(spec, total), shift=shift)
        t.check_cancelled()  # pragma: no mutate (liveness only)
        scale = None
        if plan is None:  # exact answers: the spread pass picks the public scale
            _contribute(t, spec, source.spread(spec, shift, total), None, None, 1,
                        parties, recipient, f"{tag}/spread", public_context, spec.codec)
            doc = unpack_json(t.recv(recipient, f"{tag}/scale"))
            scale = bounds.check_scale(doc.get("scale") if isinstance(doc, dict) else None,
                                       len(spec.value_columns))
        t.check_cancelled()  # pragma: no mutate (liveness only)
        values = source.pass2(spec, shift, total, scale, clip)
        t.check_cancelled()  # pragma: no mutate (liveness only)
        noise = None if plan is None else dp.party_noise(
            plan, 2, values.size, spec.backend, divisor=moment_divisor(spec, total), shift=shift,
            check=t.check_cancelled)
        _contribute(t, spec, values, noise, plan, 2, parties, recipient, f"{tag}/p2",
                    public_context, spec.moment_codec)


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, never a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _contribute(
    t: Transport, spec: StatSpec, values: np.ndarray, noise: np.ndarray | None,
    plan: dp.NoisePlan | None, pass_index: int, parties: Sequence[str], recipient: str,
    tag: str, public_context: object, codec: FixedPoint,
) -> None:
    if spec.backend == Backend.SS:
        aggregate.ss_contribute(t, parties=parties, recipient=recipient, values=values,
                                codec=codec, tag=tag, noise_ulps=noise)
    else:
        if plan is not None and noise is not None:
            values = dp.noisy_ckks_values(plan, values, noise, pass_index)
        aggregate.ckks_contribute(t, aggregator=recipient, public_context=public_context,
                                  values=values, tag=tag)


def _public_shift(spec: StatSpec, plan: dp.NoisePlan | None, summed1: np.ndarray
                  ) -> tuple[np.ndarray, float]:
    shift, n = shift_from_pass1(spec, summed1, dp_applied=plan is not None)
    if plan is not None:
        grid = spec.codec.resolution
        shift = np.round(dp.postprocess_shift(plan, shift) / grid) * grid
    return shift, n


def run_recipient_ss(
    t: Transport, spec: StatSpec, *, parties: Sequence[str], tag: str
) -> StatResult:
    """The ``ss`` recipient (coordinator): reconstructs each pass's sum and finishes.

    Exact two-pass statistics: after the shift it collects the spread pass and broadcasts
    the public scale (:mod:`smpc.stats.bounds`).  The result carries its error bound.
    """
    plan = spec.noise_plan(len(parties))
    summed1 = aggregate.ss_collect(t, parties=parties, shape=(pass1_length(spec),),
                                   codec=spec.codec, tag=f"{tag}/p1")
    if plan is not None:
        summed1 = dp.postprocess_pass1(plan, summed1, spec.ddof)
    rel = bounds.Released(len(parties), summed1,
                          bounds.pass_error(spec, len(parties), spec.codec.frac_bits),
                          sig1=_sigmas(plan, 1))
    if spec.passes == 1:
        return _finished(spec, finish(spec, summed1, None, None), rel, plan)
    shift, n = _public_shift(spec, plan, summed1)
    t.broadcast(parties, f"{tag}/shift", pack_json({"shift": shift.tolist(), "n": n}))
    scale = None
    if plan is None:
        spread = aggregate.ss_collect(t, parties=parties, shape=(len(spec.value_columns),),
                                      codec=spec.codec, tag=f"{tag}/spread")
        scale = bounds.choose_scale(spec, spread, rel.e1)
        t.broadcast(parties, f"{tag}/scale", pack_json({"scale": scale.tolist()}))
    summed2 = aggregate.ss_collect(t, parties=parties, shape=(pass2_length(spec),),
                                   codec=spec.moment_codec, tag=f"{tag}/p2")
    divisor = moment_divisor(spec, n)
    rel.summed2, rel.shift, rel.scale, rel.divisor = summed2, shift, scale, divisor
    rel.e2 = bounds.pass_error(spec, len(parties), spec.moment_codec.frac_bits)
    rel.sig2 = _sigmas(plan, 2, divisor=divisor, shift=shift)
    result = finish(spec, summed1, summed2, shift, dp_applied=plan is not None, scale=scale)
    return _finished(spec, result, rel, plan)


def _sigmas(plan: dp.NoisePlan | None, pass_index: int, **kwargs: Any) -> np.ndarray | None:
    """Per-coordinate DP noise std of a released pass (None without DP)."""
    if plan is None:
        return None
    pp = plan.pass_plan(pass_index)
    return bounds.block_sigmas([b.length for b in pp.blocks],
                               plan.sigmas(pass_index, **kwargs))


def _with_privacy(result: StatResult, plan: dp.NoisePlan | None) -> StatResult:
    if plan is not None:
        result.details["privacy"] = plan.to_json()
    return result


def _finished(spec: StatSpec, result: StatResult, rel: bounds.Released,
              plan: dp.NoisePlan | None) -> StatResult:
    return _with_privacy(bounds.attach(spec, result, rel, dp_applied=plan is not None), plan)


def run_aggregator_ckks(
    t: Transport, spec: StatSpec, *, parties: Sequence[str], keyholder: str, tag: str,
    public_context: object,
) -> None:
    """The ``ckks`` aggregator (coordinator): sums ciphertexts, relays the shift.

    First tells the key holder how many parties take part (public; the key
    holder needs it for the differential-privacy noise plan).
    """
    t.send(keyholder, f"{tag}/parties", pack_json({"parties": len(parties)}))
    aggregate.ckks_aggregate(t, parties=parties, keyholder=keyholder,
                             public_context=public_context, tag=f"{tag}/p1")
    if spec.passes == 2:
        shift_doc = t.recv(keyholder, f"{tag}/shift")
        t.broadcast(parties, f"{tag}/shift", shift_doc)
        if spec.dp is None:  # exact answers: the spread pass and the public scale
            aggregate.ckks_aggregate(t, parties=parties, keyholder=keyholder,
                                     public_context=public_context, tag=f"{tag}/spread")
            t.broadcast(parties, f"{tag}/scale", t.recv(keyholder, f"{tag}/scale"))
        aggregate.ckks_aggregate(t, parties=parties, keyholder=keyholder,
                                 public_context=public_context, tag=f"{tag}/p2")


def run_keyholder_ckks(
    t: Transport, spec: StatSpec, *, aggregator: str, keyholder: KeyHolder, tag: str
) -> StatResult:
    """The ``ckks`` key holder (analyst): decrypts and releases sums, finishes.

    With ``spec.dp`` the noise plan (for the number of parties the aggregator
    announces) tells the release how much DP noise already floods the CKKS
    error; the key holder relies on the aggregator for that count.
    """
    doc = unpack_json(t.recv(aggregator, f"{tag}/parties"))
    parties = doc.get("parties") if isinstance(doc, dict) else None
    if not isinstance(parties, int) or not 1 <= parties <= 10_000:
        raise InputError(f"{aggregator} announced a malformed party count")
    plan = spec.noise_plan(parties)
    std1 = 0.0 if plan is None else plan.release_noise_std(1)
    summed1 = aggregate.ckks_collect(t, aggregator=aggregator, keyholder=keyholder,
                                     length=pass1_length(spec), tag=f"{tag}/p1",
                                     dp_noise_std=std1, summands=parties)
    summed1[0] = float(round(summed1[0]))  # a count is a whole number
    if plan is not None:
        summed1 = dp.postprocess_pass1(plan, summed1, spec.ddof)
    rel = bounds.Released(parties, summed1, bounds.pass_error(
        spec, parties, 0, dp_noise_std=None if plan is None else std1,
        dp_rounding=plan is not None), sig1=_sigmas(plan, 1))
    if spec.passes == 1:
        return _finished(spec, finish(spec, summed1, None, None), rel, plan)
    shift, n = _public_shift(spec, plan, summed1)
    t.send(aggregator, f"{tag}/shift", pack_json({"shift": shift.tolist(), "n": n}))
    scale = None
    if plan is None:
        spread = aggregate.ckks_collect(t, aggregator=aggregator, keyholder=keyholder,
                                        length=len(spec.value_columns), tag=f"{tag}/spread",
                                        dp_noise_std=0.0, summands=parties)  # exact: floods
        scale = bounds.choose_scale(spec, spread, rel.e1)
        t.send(aggregator, f"{tag}/scale", pack_json({"scale": scale.tolist()}))
    std2 = 0.0 if plan is None else plan.release_noise_std(2, shift=shift)
    summed2 = aggregate.ckks_collect(t, aggregator=aggregator, keyholder=keyholder,
                                     length=pass2_length(spec), tag=f"{tag}/p2",
                                     dp_noise_std=std2, summands=parties)
    rel.summed2, rel.shift, rel.scale = summed2, shift, scale
    rel.divisor = moment_divisor(spec, n)
    rel.e2 = bounds.pass_error(spec, parties, 0, dp_noise_std=None if plan is None else std2,
                               dp_rounding=plan is not None)
    rel.sig2 = _sigmas(plan, 2, divisor=rel.divisor, shift=shift)
    result = finish(spec, summed1, summed2, shift, dp_applied=plan is not None, scale=scale)
    return _finished(spec, result, rel, plan)


def simulate(
    spec: StatSpec, tables: Sequence[np.ndarray], *, tag: str = "stat", timeout: float = 300.0,
) -> tuple[StatResult, Any]:
    """Run a joint statistic among ``len(tables)`` simulated parties in this process.

    Party ``i`` holds ``tables[i]`` (rows x columns, in ``spec.value_columns``
    order).  Returns the result and the :class:`smpc.simulator.SimulationResult`
    (traffic per node).  On ``ckks`` a simulated analyst holds the key and the
    coordinator aggregates.
    """
    from smpc import simulator

    parties = [f"p{i}" for i in range(len(tables))]
    roles: dict[str, Any] = {}
    if spec.backend == Backend.SS:
        for name, rows in zip(parties, tables, strict=True):
            roles[name] = lambda t, rows=rows: run_party(
                t, spec, rows, parties=parties, recipient="coordinator", tag=tag)
        roles["coordinator"] = lambda t: run_recipient_ss(t, spec, parties=parties, tag=tag)
        sim = simulator.run(roles, timeout=timeout)
        return sim.results["coordinator"], sim
    from smpc import ckks

    holder = ckks.KeyHolder(spec.ckks_preset)
    public = ckks.load_context(holder.public_context())
    for name, rows in zip(parties, tables, strict=True):
        roles[name] = lambda t, rows=rows: run_party(
            t, spec, rows, parties=parties, recipient="coordinator", tag=tag,
            public_context=public)
    roles["coordinator"] = lambda t: run_aggregator_ckks(
        t, spec, parties=parties, keyholder="analyst", tag=tag, public_context=public)
    roles["analyst"] = lambda t: run_keyholder_ckks(
        t, spec, aggregator="coordinator", keyholder=holder, tag=tag)
    sim = simulator.run(roles, timeout=timeout)
    return sim.results["analyst"], sim
