"""The coordinator: protocols as stage machines over the parties' control calls.

Owns: sessions as the coordinator sees them, the statistic and prediction protocols, and its
``Coordinator`` service (:mod:`.node`); ``python -m parties.coordinator --config FILE`` runs it.
It checks nothing on the parties' behalf: privacy is each party's business.
May import: :mod:`parties.errors`, :mod:`parties._pb`, :mod:`parties.pki` (to verify the
analyst's signed requests), :mod:`parties.config`,
:mod:`parties.transport`, :mod:`parties.data` (to parse filters early),
:mod:`parties.privacy` (to compare the parties' effective specs) and the core.
"""
