"""The party's own minimums for a request, at their boundaries: parties per statistic, flooding.

``policy.min_parties`` (never below 2) and ``policy.min_flood_bits`` are checked by every party
at ``Prepare`` (:meth:`parties.node.party.PartyNode._prepare_statistic` and
``prepare_model_owner``), whatever the coordinator sends.  ``test_deviating_coordinator.py``
shows both refusals through a whole federation (a one-party statistic, a ckks inference with
``flood_bits=0``); these tests pin the decisions themselves at their edges, where a flipped
comparison or a changed floor would otherwise go unseen (found by mutation testing, target
``prepare``): a count equal to the minimum is accepted, one below is refused, the floor of two
holds even against a policy that says one, and flooding is required on ``ckks`` only.
"""

from __future__ import annotations

import pytest

from parties.errors import PolicyError
from parties.node.checks import check_flood_bits, check_party_count
from smpc.names import Backend


@pytest.mark.parametrize(("min_parties", "count", "accepted"), [
    (2, 1, False), (2, 2, True), (2, 3, True),
    (3, 2, False), (3, 3, True),
    (1, 1, False), (1, 2, True),   # a policy of 1 (no config file allows it) still means 2
    (0, 1, False),
])
def test_a_statistic_needs_at_least_the_policys_parties_and_never_fewer_than_two(
        min_parties, count, accepted):
    """Accepted exactly when ``count >= max(2, min_parties)``; a refusal names the minimum
    and the policy key an operator can change."""
    if accepted:
        check_party_count("org-a", min_parties, count)
    else:
        fewest = max(2, min_parties)
        with pytest.raises(PolicyError, match=rf"org-a refuses: a statistic needs at least "
                                              rf"{fewest} data parties .*policy.min_parties.*"
                                              rf"has {count}$"):
            check_party_count("org-a", min_parties, count)


@pytest.mark.parametrize(("backend", "least", "flood_bits", "accepted"), [
    (Backend.CKKS, 16, 15, False), (Backend.CKKS, 16, 0, False),
    (Backend.CKKS, 16, 16, True), (Backend.CKKS, 16, 30, True),
    (Backend.CKKS, 0, 0, True),
    (Backend.SS, 16, 0, True),     # ss returns no CKKS error: nothing to flood
])
def test_a_model_owner_floods_ckks_logits_with_at_least_its_policys_bits(
        backend, least, flood_bits, accepted):
    """Accepted exactly when the backend is ``ss`` or ``flood_bits >= least``; a refusal names
    both numbers and ``policy.min_flood_bits``."""
    if accepted:
        check_flood_bits("org-b", least, backend, flood_bits)
    else:
        with pytest.raises(PolicyError, match=rf"org-b refuses: .* at least {least} bits "
                                              rf"\(policy.min_flood_bits\); the request asks "
                                              rf"for {flood_bits}$"):
            check_flood_bits("org-b", least, backend, flood_bits)
