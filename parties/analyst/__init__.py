"""The analyst's side: a client that asks the coordinator and holds its own CKKS key.

Owns: :class:`.client.Client` (any statistic spec, inference, health, describe).
May import: :mod:`parties.errors`, :mod:`parties._pb`, :mod:`parties.pki`,
:mod:`parties.config`, :mod:`parties.data` (to check a filter before signing it),
:mod:`parties.transport`, :mod:`parties.privacy` (to check the spec the parties prepared) and
the core.
"""
