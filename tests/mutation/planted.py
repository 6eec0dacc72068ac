"""The privacy bugs planted by hand (issue 9, and issue 11's dealer): each must be caught by a
named test.

Issue 9's are the bugs that the suite of the first wave let through; issue 11's are the
flaw the dealing had before (masks a dealer could make equal) and the check that now stops a
forged correction, each undone.  Each is a small patch
(``old`` -> ``new`` text, applied once) that keeps every result *correct* -- so only a test
that looks at privacy can see it -- and the tests that must fail when it is planted.  The
mutation run judges them like mutants; CI runs all of them on every build.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Planted:
    name: str
    path: str
    edits: tuple[tuple[str, str], ...]   # (old, new): each old occurs exactly once
    tests: tuple[str, ...]               # the tests that must catch it (one failing suffices)
    what: str

    def apply(self, text: str) -> str:
        for old, new in self.edits:
            if text.count(old) != 1:
                raise ValueError(f"planted bug {self.name!r}: {old!r} occurs "
                                 f"{text.count(old)} times in {self.path}")
            text = text.replace(old, new)
        return text


PLANTED: tuple[Planted, ...] = (
    Planted(
        "unmasked-aggregate", "smpc/aggregate.py",
        (("    sum_share = sharing_.explicit.copy()\n",
          "    sum_share = encoded.copy()\n"),
         ("        sum_share += sharing.expand_share(seed, encoded.shape, "
          "stream=f\"{tag}/{peer}\")\n",
          "        pass\n")),
        ("tests/unit/test_leaks.py::test_no_party_aggregate_crosses_the_wire",),
        "every party sends its unmasked aggregate as its share of the secure sum "
        "(the result stays correct)"),
    Planted(
        "same-seed-for-every-peer", "smpc/sharing.py",
        (("    seeds = tuple(randomness.fresh_seed() for _ in range(n_others))\n",
          "    one = randomness.fresh_seed()\n    seeds = tuple(one for _ in range(n_others))\n"),),
        ("tests/unit/test_sharing.py::test_seeds_are_distinct_per_peer_and_per_call",
         "tests/unit/test_leaks.py::test_recipient_and_one_party_cannot_unmask_a_third"),
        "share_with_seeds gives every peer the same seed: the recipient and one party "
        "unmask another"),
    Planted(
        "one-mask-seed-for-both-owners", "smpc/beaver/dealing.py",
        (("    seed = randomness.fresh_seed()\n",
          "    seed = hashlib.sha256(tag.encode()).digest()[: randomness.SEED_BYTES]\n"),),
        ("tests/unit/test_dealer_attacks.py::"
         "test_a_dealer_that_reuses_a_seed_across_owners_learns_nothing_and_leaks_nothing",
         "tests/unit/test_leaks_inference.py::test_inference_seeds_are_fresh_per_owner_and_session"),
        "every party's Beaver masks come from one seed that depends only on the public tag -- "
        "what a dealer choosing the seeds could force before issue 11 (results stay correct)"),
    Planted(
        "dealt-triple-never-checked", "smpc/beaver/dealing.py",
        (("    if to_check:\n", "    if False:\n"),),
        ("tests/unit/test_dealer_attacks.py::"
         "test_a_dealer_that_hides_an_owners_seed_in_its_correction_is_caught_before_any_opening",),
        "the parties never check a dealt matmul triple: a deviating dealer's correction is used "
        "as sent (results stay correct with an honest dealer)"),
    Planted(
        "ckks-pass2-noise-17x-small", "smpc/dp/noise.py",
        (("    return out.astype(np.float64) * 2.0**-bits\n",
          "    return out.astype(np.float64) * 2.0**-bits "
          "/ (17.0 if pass_index == 2 else 1.0)\n"),),
        ("tests/unit/test_dp_released_noise.py::"
         "test_two_pass_statistics_release_the_planned_noise_on_both_passes[ckks]",),
        "ckks second-pass DP noise calibrated 17x too small (var/std/cov/corr/linreg)"),
    Planted(
        "dp-covariance-off-diagonals-zeroed", "smpc/stats/finishing.py",
        (("        cov = dp.postprocess_covariance(cov)  # post-processing: costs no privacy\n",
          "        cov = np.diag(np.diag(dp.postprocess_covariance(cov)))\n"),),
        ("tests/unit/test_stats_dp.py::test_private_statistics_are_close_to_the_truth[corr-ss]",
         "tests/unit/test_stats_dp.py::test_private_statistics_are_close_to_the_truth[cov-ckks]"),
        "under DP, covariance off-diagonals zeroed (corr and slope always 0)"),
    Planted(
        "one-party-omits-its-noise", "smpc/stats/roles.py",
        (("    noise = None if plan is None else dp.party_noise("
          "plan, 1, values.size, spec.backend,\n",
          "    noise = None if plan is None or t.me == parties[0] else dp.party_noise(\n"
          "        plan, 1, values.size, spec.backend,\n"),
         ("        noise = None if plan is None else dp.party_noise(\n",
          "        noise = None if plan is None or t.me == parties[0] else dp.party_noise(\n")),
        ("tests/unit/test_dp_released_noise.py::"
         "test_one_pass_statistics_release_the_planned_noise[sum-ss]",),
        "one party omits its DP noise share (total noise variance x 2/3 with 3 parties)"),
    Planted(
        "audit-first-record-deletion-unseen", "parties/privacy/audit_verify.py",
        (("    deleted = [s for s in range(1, top + 1) if s not in slots]\n",
          "    deleted = [s for s in range(2, top + 1) if s not in slots]\n"),),
        ("tests/unit/test_audit_verify.py::test_first_record_deleted",),
        "audit verify never reports the first record missing"),
    Planted(
        "guard-checks-role-only", "parties/config/model.py",
        (("        if entry is None:\n"
          "            return None, f\"it is not {listed} as {identity.role}\"\n"
          "        problem = self.certificate_problem(identity.name, entry.fingerprint, "
          "identity.fingerprint)\n"
          "        if problem is not None:\n            return None, problem\n"
          "        return entry, \"\"\n",
          "        return (entry if entry is not None\n"
          "                else (self.analysts or self.nodes)[0]), \"\"\n"),),
        ("tests/unit/test_guard.py::test_unlisted_callers_are_denied",
         "tests/unit/test_guard.py::test_certificate_other_than_the_pinned_one_is_denied"),
        "certificate guard checks the role only, not the allow-list or the pinned fingerprint"),
)
