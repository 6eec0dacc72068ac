"""What a party runs for a session: one typed job per role.

A job is made at ``Prepare`` (the policy has been applied, the rows selected, the privacy cost
reserved) and run at ``Run``, in a worker thread, over a transport to the session's other
members.  Its :meth:`Job.run` returns what ``Await`` reports and the sentence the audit log
records when the role finished.

* :class:`StatisticJob` -- a data party of a joint statistic (:func:`smpc.stats.run_party`);
  on ``ckks`` it first receives the analyst's public context from the aggregator.
* :class:`DataOwnerJob` -- the data owner of an inference: its predictions are held in memory
  (:class:`Ready`) and written only when the coordinator confirms every participant finished.
* :class:`ModelOwnerJob` -- the model owner: applies its model; it learns no prediction.

What leaves the party while a job runs is only the protocol's messages (seeds, shares, masked
openings, ciphertexts); see :mod:`smpc.stats` and :mod:`smpc.linear`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from parties.errors import PolicyError
from parties.pki.signed import context_hash
from parties.privacy.models import (
    MAX_REQUIREMENTS_BYTES,
    Requirements,
    check_plausible,
    rows_within_bounds,
)
from parties.privacy.policy import PolicyRequest
from smpc import ckks, linear, stats
from smpc.errors import ProtocolError
from smpc.names import Backend
from smpc.stats.rowsource import LocalRows
from smpc.transport import Transport

__all__ = ["DataOwnerJob", "Job", "ModelOwnerJob", "Outcome", "Ready", "StatisticJob"]


@dataclass(frozen=True)
class Outcome:
    """What ``Await`` reports for a finished role."""

    n_predictions: int = 0
    output_path: str = ""
    status: str = "done"      # "ready": a data owner's predictions, computed, not yet written


@dataclass(frozen=True)
class Ready:
    """A data owner's predictions, held in memory until the coordinator's second ``Await``."""

    predictions: np.ndarray
    row_numbers: np.ndarray
    public_count: int | None = None   # under DP: the padded size, reported instead of the count

    @property
    def reported(self) -> int:
        """The number of predictions ``Await`` reports: the public padded size under DP."""
        return len(self.predictions) if self.public_count is None else self.public_count


@dataclass
class Job(ABC):
    """One role of one session at this party.

    ``request`` is what the audit log records about the request; ``charged`` says a privacy
    charge is reserved for it (committed before :meth:`run` starts); ``audited`` is the ticket
    of its queued "accepted" audit record (settled before :meth:`run` starts).
    """

    tag: str
    request: PolicyRequest | None = field(default=None, kw_only=True)
    charged: bool = field(default=False, kw_only=True)
    audited: int = field(default=0, kw_only=True)  # ticket of the queued "accepted" record
    claimed: int = field(default=0, kw_only=True)  # ticket of the queued replay record

    @abstractmethod
    def run(self, t: Transport) -> tuple[Outcome | Ready, str]:
        """Run the role; returns its outcome and the audit sentence ("" = audited later)."""


@dataclass
class StatisticJob(Job):
    """A data party of a joint statistic: its selected rows and the session's shape."""

    spec: stats.StatSpec
    rows: np.ndarray | LocalRows   # a matrix, or an engine's aggregates (parties.data.sql)
    parties: list[str]
    hub: str                      # the recipient (ss) or aggregator (ckks)
    context_sha256: str | None = None   # ckks: the analyst's public key, as it signed it
    row_cap: int | None = None    # under DP: the table's row count, for the range checks
    min_cell_size: int = 0        # exact mode: cells of fewer rows are sent as 0

    def run(self, t: Transport) -> tuple[Outcome, str]:
        ctx = None
        if self.spec.backend == Backend.CKKS:
            from smpc import ckks

            data = t.recv_bytes(self.hub, f"{self.tag}/context", max_len=ckks.MAX_CONTEXT_BYTES)
            if self.context_sha256 is None or context_hash(data) != self.context_sha256:
                # a coordinator handing out its own key would decrypt this party's aggregate
                raise ProtocolError(f"{self.hub} handed out a public key the analyst did not "
                                    "sign: nothing was encrypted", peer=self.hub)
            ctx = ckks.load_context(data)
        stats.run_party(t, self.spec, self.rows, parties=self.parties, recipient=self.hub,
                        tag=self.tag, public_context=ctx, row_cap=self.row_cap,
                        min_cell_size=self.min_cell_size)
        return Outcome(), ("noisy contribution sent (charge spent)" if self.charged
                           else "exact contribution sent")


@dataclass
class DataOwnerJob(Job):
    """The data owner of an inference: its feature matrix and the rows' numbers in its table.

    Under a DP policy (``public_count`` set) ``rows`` holds the real rows first, one per entry of
    ``row_numbers``, then dummy rows up to the public size; the dummies' predictions are
    discarded here and the public size is what ``Await`` reports.
    """

    spec: linear.InferenceSpec
    rows: np.ndarray
    row_numbers: np.ndarray
    model_owner: str
    dealer: str | None
    public_count: int | None = None

    features: tuple[str, ...] = ()   # the columns of ``rows``, as the coordinator named them
    me: str = ""
    key_column: str | None = None    # written beside the predictions (parties.node.inference)
    left_out: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # row numbers
    analyst: str = ""                # the verified signer: with the model owner, the key's scope
    keys: ckks.KeyCache | None = None  # the node's kept CKKS key pairs (None: one per request)

    def run(self, t: Transport) -> tuple[Ready, str]:
        numbers = np.asarray(self.row_numbers)
        # the model owner's requirements come first, straight from it; nothing is sent before
        # the rows are checked against them (the real rows: a DP data owner's padding dummies
        # are zeros whose predictions it discards)
        raw = t.recv_bytes(self.model_owner, f"{self.tag}/requirements",
                           max_len=MAX_REQUIREMENTS_BYTES)
        needs = Requirements.from_bytes(raw, self.model_owner)
        me, rows = self.me or t.me, self.rows
        if needs.feature_bound != self.spec.feature_bound:
            raise PolicyError(f"{me} refuses: the model owner {self.model_owner} was given "
                              "another feature bound than the one this data owner checked "
                              "its rows against (the coordinator changed the request)")
        if self.public_count is None:
            check_plausible(needs, self.features, rows, me=me, owner=self.model_owner)
        else:  # under DP: a row outside the bounds becomes a dummy, nothing is refused
            keep = rows_within_bounds(needs, self.features, rows[:numbers.size], me=me,
                                      owner=self.model_owner)
            if not keep.all():
                rows = np.zeros_like(rows)
                rows[:int(keep.sum())] = self.rows[:numbers.size][keep]
                numbers = numbers[keep]
        holder = None
        if self.keys is not None and self.spec.backend == Backend.CKKS:
            holder = self.keys.get((self.analyst, self.model_owner), self.spec.ckks_preset)
        preds = np.asarray(linear.run_data_owner(
            t, self.spec, rows, model_owner=self.model_owner, dealer=self.dealer,
            tag=self.tag, holder=holder))
        # audited when written (on release) or dropped (on abort)
        return Ready(preds[:numbers.size], numbers, self.public_count), ""


@dataclass
class ModelOwnerJob(Job):
    """The model owner of an inference: the model it applies."""

    spec: linear.InferenceSpec
    model: linear.LinearModel
    data_owner: str
    dealer: str | None

    model_name: str = ""
    noise_std: float = 0.0          # the policy's prediction noise (model output units)
    requirements: bytes = b""       # :class:`Requirements`, sent to the data owner first

    def run(self, t: Transport) -> tuple[Outcome, str]:
        t.send(self.data_owner, f"{self.tag}/requirements", self.requirements)
        linear.run_model_owner(t, self.spec, self.model, data_owner=self.data_owner,
                               dealer=self.dealer, tag=self.tag, noise_std=self.noise_std)
        return Outcome(), "model applied; only the data owner learns the predictions"
