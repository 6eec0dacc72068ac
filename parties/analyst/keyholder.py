"""The analyst as CKKS key holder of a statistic: the only node that decrypts.

The secret key never leaves this role (a :class:`smpc.ckks.KeyHolder` in the analyst's
process).  Under differential privacy the key holder first takes the spec the parties
prepared -- their policies may have filled in clipping bounds -- and checks it is the
requested one otherwise, so that it plans the release with the noise the parties really add.
"""

from __future__ import annotations

from typing import Any

from parties.privacy.policy import check_effective_spec
from smpc import stats
from smpc.stats import StatResult, StatSpec
from smpc.transport import Transport, unpack_json

__all__ = ["run_keyholder"]


def run_keyholder(t: Transport, spec: StatSpec, *, aggregator: str, keyholder: Any,
                  tag: str) -> StatResult:
    """Run the key holder's role of a ``ckks`` statistic; returns the result."""
    if spec.dp is not None:
        doc = unpack_json(t.recv(aggregator, f"{tag}/spec"))
        spec = check_effective_spec(spec, StatSpec.from_json(doc), aggregator)
    return stats.run_keyholder_ckks(t, spec, aggregator=aggregator, keyholder=keyholder, tag=tag)
