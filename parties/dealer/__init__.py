"""The optional separate dealer: correlated randomness for ``ss`` inference.

Owns: the ``Dealer`` service (:mod:`.node`); ``python -m parties.dealer --config FILE`` runs it.
May import: :mod:`parties.errors`, :mod:`parties._pb`, :mod:`parties.config`,
:mod:`parties.transport` and the core.
"""
