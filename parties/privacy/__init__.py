"""A party's own privacy enforcement: policy, budget ledger, audit log, data at rest.

Owns: the policy gate and the checks a party makes of a request (:mod:`.policy`), the
orchestration of ledger and audit log around a request's life (:mod:`.guard`), the budget
ledger (:mod:`.ledger`), the hash-chained audit log (:mod:`.audit`), AES-256-GCM encryption at
rest (:mod:`.atrest`) and the encrypted outputs and models a party keeps (:mod:`.outputs`).
Everything here runs inside the party node and decides on the party's own configuration.
May import: :mod:`parties.errors`, :mod:`parties.pki`, :mod:`parties.config` and the core.
"""
