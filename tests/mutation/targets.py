"""What the mutation run mutates (the privacy-critical code) and which tests judge each mutant.

Each :class:`Target` is one file, the functions in it whose behaviour a privacy guarantee
rests on (``None``: every function of the file), and the test files that must kill its
mutants.  Tests are listed fastest and most specific first: the run stops a mutant at its
first failing test (``pytest -x``).

Why these functions: they are the code paths named in SECURITY.md's guarantees -- shares and
seeds (n-out-of-n secrecy), secure aggregation, Beaver triples and openings, differential-privacy
noise and its accounting, CKKS release flooding and secret-key hygiene, inference masking, the
certificate and request guards, the analyst's signed requests and the record of those already
used, the party's policy gate, the budget ledger and the audit verifier.  Helpers that only
format messages are left out: a mutant there cannot weaken privacy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One area of privacy-critical code: functions in one or more files, and their tests.

    ``path`` / ``functions`` name the first file; ``more`` adds (path, functions) pairs for
    areas that span files.  The name is part of every mutant's id, so moving a function
    between the files of one target keeps its mutants' ids (and their explanations).
    """

    name: str                        # short label used in reports and on the command line
    path: str                        # repository-relative file
    functions: tuple[str, ...] | None
    tests: tuple[str, ...]           # pytest arguments (files or node ids), run with -x
    more: tuple[tuple[str, tuple[str, ...] | None], ...] = ()

    @property
    def files(self) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
        return ((self.path, self.functions), *self.more)


LEAKS = ("tests/unit/test_leaks.py", "tests/unit/test_leaks_uniform.py")
CORE_SHARING_TESTS = ("tests/unit/test_sharing.py", *LEAKS, "tests/unit/test_stats.py")

TARGETS: tuple[Target, ...] = (
    Target("randomness", "smpc/randomness.py", None,
           ("tests/unit/test_randomness.py", "tests/unit/test_sharing.py", *LEAKS)),
    Target("sharing", "smpc/sharing.py", None, CORE_SHARING_TESTS),
    Target("aggregate", "smpc/aggregate.py", None,
           ("tests/unit/test_aggregate_guards.py", *LEAKS, "tests/unit/test_stats.py",
            "tests/unit/test_sharing.py", "tests/unit/test_stats_dp.py")),
    Target("stats-roles", "smpc/stats/roles.py",
           ("run_party", "_contribute", "_public_shift", "run_recipient_ss", "_with_privacy",
            "run_aggregator_ckks", "run_keyholder_ckks"),
           ("tests/unit/test_aggregate_guards.py", "tests/unit/test_stats_roles_release.py",
            "tests/unit/test_stats_dp_postprocess.py",
            *LEAKS, "tests/unit/test_stats.py", "tests/unit/test_dp_ranges.py",
            "tests/unit/test_dp_released_noise.py", "tests/unit/test_stats_dp.py"),
           more=(("smpc/stats/local.py", ("moment_divisor",)),
                 # the party's rows as local aggregates: DP clipping happens here
                 ("smpc/stats/rowsource.py", ("ArrayRows._clipped", "ArrayRows.pass1",
                                              "ArrayRows.spread", "ArrayRows.pass2",
                                              "local_rows")))),
    Target("beaver", "smpc/beaver/dealing.py",
           ("_hello", "_expand", "_sum_expansions", "_last_share", "_corrections", "_unpack",
            "_recv_seed", "deal", "receive", "deal_local", "_correction_size"),
           ("tests/unit/test_beaver_check.py", "tests/unit/test_beaver_checks.py",
            "tests/unit/test_dealer_attacks.py",
            "tests/unit/test_leaks_inference.py", "tests/unit/test_leaks_uniform.py",
            "tests/unit/test_beaver.py", "tests/unit/test_linear.py"),
           more=(("smpc/beaver/checking.py",
                  ("check_shapes", "challenge_seed", "fold", "_recv_challenge", "verify")),
                 ("smpc/beaver/members.py", ("check_parties", "index_of")),
                 ("smpc/beaver/online.py",
                  ("_ring", "open_shares", "_beaver", "truncate", "_dealer_truncate", "_product")),
                 ("smpc/beaver/shares.py", ("TripleShare._consume", "TruncPairShare._consume")),
                 ("smpc/beaver/requests.py", ("check_product_range", "check_bound_bits",
                                              "TripleRequest.__post_init__",
                                              "TripleRequest.check_dims")))),
    Target("dp", "smpc/dp/accounting.py",
           ("epsilon_from_rho", "delta_from_rho", "_rho_from_epsilon", "rho_from_epsilon",
            "PrivacyCost.__add__", "compose", "cost_from_request", "effective_rho",
            "_check_rho", "_check_delta", "_check_epsilon"),
           ("tests/unit/test_dp_edges.py", "tests/unit/test_dp_contract.py",
            "tests/unit/test_dp_plan_contracts.py",
            "tests/unit/test_dp.py", "tests/unit/test_dp_released_noise.py",
            "tests/unit/test_stats_dp.py"),
           more=(("smpc/dp/request.py",
                  ("DPRequest.cost", "DPRequest.bounds_for", "_check_bounds_map")),
                 ("smpc/dp/planning.py",
                  ("clip_rows", "pass2_widths", "pass2_sensitivities", "NoisePlan.pass_plan",
                   "NoisePlan.sensitivities", "NoisePlan.lattice_sigmas", "NoisePlan.sigmas",
                   "NoisePlan.release_noise_std", "NoisePlan._bits", "_check_divisor", "kls_tau",
                   "_calibrate", "plan")),
                 ("smpc/dp/noise.py",
                  ("sample_discrete_gaussian", "party_noise", "add_ring_noise",
                   "noisy_ckks_values")),
                 ("smpc/dp/postprocess.py",
                  ("postprocess_pass1", "postprocess_shift", "postprocess_covariance")))),
    Target("ckks-release", "smpc/ckks/release.py",
           ("csprng_gaussian", "ReleaseParameters.output_std", "release_parameters"),
           ("tests/unit/test_ckks_release.py", "tests/unit/test_ckks.py", "tests/unit/test_dp.py",
            "tests/unit/test_leaks.py", "tests/unit/test_leaks_inference.py",
            "tests/unit/test_linear.py"),
           more=(("smpc/ckks/keyholder.py",
                  ("KeyHolder.public_context", "KeyHolder.release_parameters", "KeyHolder.release",
                   "KeyHolder.decrypt_and_release")),
                 ("smpc/ckks/ops.py", ("flood_ciphertexts", "encrypt_public",
                                       "encrypt_public_stream", "add_ciphertexts")),
                 ("smpc/ckks/context.py", ("load_context",)),
                 ("smpc/ckks/presets.py", ("Preset.error_bound",)))),
    Target("inference", "smpc/linear.py",
           ("_triple_request", "run_dealer_ss", "run_data_owner_ss", "run_model_owner_ss",
            "_recv_seed", "model_flood_std", "run_data_owner_ckks", "run_model_owner_ckks",
            "check_features", "check_model"),
           ("tests/unit/test_dealer_attacks.py", "tests/unit/test_linear_checks.py",
            "tests/unit/test_leaks_inference.py",
            "tests/unit/test_linear.py", "tests/unit/test_encrypted_sigmoid_range.py",
            "tests/unit/test_sklearn_models.py", "tests/unit/test_ckks_keycache.py")),
    Target("authorize", "parties/config/model.py",
           ("FederationConfig.authorize", "FederationConfig.check_caller",
            "FederationConfig.certificate_problem", "FederationConfig.is_revoked"),
           ("tests/unit/test_guard.py", "tests/unit/test_federation_reload.py",
            "tests/unit/test_config.py")),
    Target("guard", "parties/transport/server.py", ("AccessGuard._check", "caller"),
           ("tests/unit/test_guard.py",)),
    Target("identity", "parties/pki/identity.py",
           ("fingerprint", "normalize_fingerprint", "identity_from_certificate",
            "verify_node_certificate"),
           ("tests/unit/test_secret_files.py", "tests/unit/test_identity.py",
            "tests/unit/test_tls.py", "tests/unit/test_guard.py"),
           more=(("parties/transport/tls.py", ("_identity_of_pem", "peer_identity")),
                 ("parties/pki/files.py", ("write_private_key", "atomic_write")))),
    Target("signed", "parties/pki/signed.py", ("sign", "_field", "verify"),
           ("tests/unit/test_signed.py",),
           more=(("parties/privacy/replay.py", ("SeenRequests.claim", "SeenRequests.seen")),)),
    Target("prepare", "parties/node/party.py", ("PartyNode._signed",),
           ("tests/unit/test_party_minimums.py", "tests/unit/test_session_members.py",
            "tests/unit/test_inference_data_owner.py",
            "tests/unit/test_deviating_coordinator.py"),
           more=(("parties/node/prediction_prepare.py", ("check_prediction",)),
                 ("parties/node/checks.py", ("check_party_count", "check_flood_bits")))),
    Target("policy", "parties/privacy/policy.py",
           ("PolicyGate.check_access", "PolicyGate.check_dp", "PolicyGate.check_cohort",
            "PolicyGate.check_cost",
            "PolicyGate.check", "check_effective_spec", "agreed_spec"),
           ("tests/unit/test_policy_limits.py", "tests/unit/test_spec_agreement.py",
            "tests/unit/test_policy.py",
            "tests/unit/test_ledger.py"),
           more=(("parties/privacy/guard.py",
                  ("PrivacyGuard.precheck_budget", "PrivacyGuard._over_budget",
                   "PrivacyGuard.reserve", "PrivacyGuard.commit", "PrivacyGuard.refund")),)),
    Target("redact", "parties/node/redact.py", ("redact",),
           ("tests/unit/test_policy.py", "tests/unit/test_session_members.py"),
           more=(("parties/transport/control.py", ("_members_from_pb",)),
                 ("parties/node/checks.py", ("check_node_role",)))),
    Target("models", "parties/privacy/models.py",
           ("least_squares_error_floor", "rows_for_precision", "check_plausible",
            "ModelUsage._status", "ModelUsage.reserve", "ModelUsage._settle",
            "ModelUsage.commit", "ModelUsage.refund", "ModelUsage.recover",
            "ModelGate.precheck", "ModelGate._check_usage", "ModelGate.reserve"),
           ("tests/unit/test_model_policy.py",),
           more=(("smpc/ckks/ops.py", ("_slot_noise", "_with_size")),)),
    Target("ledger", "parties/privacy/ledger.py",
           ("Ledger._status", "Ledger.set_budget", "Ledger.remaining", "Ledger.reserve",
            "Ledger.commit", "Ledger.abort", "Ledger.recover", "_rho"),
           ("tests/unit/test_ledger_events.py", "tests/unit/test_ledger.py")),
    Target("audit", "parties/privacy/audit.py",
           ("AuditLog.append", "AuditLog._mac", "_chain_hash", "_genesis",
            "AuditEvent.__post_init__", "_text", "_cost", "Head.from_json"),
           ("tests/unit/test_audit_metadata.py", "tests/unit/test_audit_verify.py",
            "tests/unit/test_audit.py"),
           more=(("parties/privacy/audit_verify.py", ("verify_records",)),)),
    # issue 15: the SQL engines -- a filter's literal must stay a bound parameter, a row that
    # the memory engine leaves out must be left out in SQL, and a bin count must stay exact
    Target("sql-engine", "parties/data/sql/where.py", None,
           ("tests/unit/test_sql_rows_duckdb.py", "tests/integration/test_sql_hostile_filters.py",
            "tests/integration/test_engine_postgres.py", "tests/integration/test_engines.py"),
           more=(("parties/data/sql/rows.py", None),
                 ("parties/data/sql/dialect.py", ("Dialect.ident", "Dialect.number",
                                                  "Dialect.sum", "Dialect.number_or_null")),
                 ("parties/data/sql/table.py", ("SqlTable.row_mask", "SqlTable.missing_error",
                                                "SqlTable._problem", "SqlTable.count",
                                                "SqlTable._where",
                                                "SqlTable.local_rows", "SqlTable.select")))),
)


def by_name(names: list[str] | None) -> list[Target]:
    """The targets with these names (all when None); unknown names are an error."""
    if not names:
        return list(TARGETS)
    known = {t.name: t for t in TARGETS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
