"""The party node: a gRPC server beside one organisation's data.

Owns: the ``Party`` service, the jobs a party runs for a session, and its lifecycle
(:mod:`.party`); ``python -m parties.node --config party.json`` runs it.
May import: :mod:`parties.errors`, :mod:`parties._pb`, :mod:`parties.pki`,
:mod:`parties.config`, :mod:`parties.transport`, :mod:`parties.data`, :mod:`parties.privacy`
and the core.
"""
