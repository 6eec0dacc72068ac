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

from parties.pki.signed import context_hash
from parties.privacy.policy import PolicyRequest
from smpc import linear, stats
from smpc.errors import ProtocolError
from smpc.names import Backend
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


@dataclass
class Job(ABC):
    """One role of one session at this party.

    ``request`` is what the audit log records about the request; ``charged`` says a privacy
    charge is reserved for it (committed before :meth:`run` starts).
    """

    tag: str
    request: PolicyRequest | None = field(default=None, kw_only=True)
    charged: bool = field(default=False, kw_only=True)

    @abstractmethod
    def run(self, t: Transport) -> tuple[Outcome | Ready, str]:
        """Run the role; returns its outcome and the audit sentence ("" = audited later)."""


@dataclass
class StatisticJob(Job):
    """A data party of a joint statistic: its selected rows and the session's shape."""

    spec: stats.StatSpec
    rows: np.ndarray
    parties: list[str]
    hub: str                      # the recipient (ss) or aggregator (ckks)
    context_sha256: str | None = None   # ckks: the analyst's public key, as it signed it

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
                        tag=self.tag, public_context=ctx)
        return Outcome(), ("noisy contribution sent (charge spent)" if self.charged
                           else "exact contribution sent")


@dataclass
class DataOwnerJob(Job):
    """The data owner of an inference: its feature matrix and the rows' numbers in its table."""

    spec: linear.InferenceSpec
    rows: np.ndarray
    row_numbers: np.ndarray
    model_owner: str
    dealer: str | None

    def run(self, t: Transport) -> tuple[Ready, str]:
        preds = linear.run_data_owner(t, self.spec, self.rows, model_owner=self.model_owner,
                                      dealer=self.dealer, tag=self.tag)
        # audited when written (on release) or dropped (on abort)
        return Ready(np.asarray(preds), np.asarray(self.row_numbers)), ""


@dataclass
class ModelOwnerJob(Job):
    """The model owner of an inference: the model it applies."""

    spec: linear.InferenceSpec
    model: linear.LinearModel
    data_owner: str
    dealer: str | None

    def run(self, t: Transport) -> tuple[Outcome, str]:
        linear.run_model_owner(t, self.spec, self.model, data_owner=self.data_owner,
                               dealer=self.dealer, tag=self.tag)
        return Outcome(), "model applied; only the data owner learns the predictions"
