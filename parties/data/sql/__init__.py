"""The SQL engines' shared parts: dialects, filters compiled to SQL, local aggregates in SQL.

Owns: turning a parsed ``--where`` filter (:mod:`parties.data.filters`) into a SQL condition
with **bound parameters** (:mod:`.where`) and a statistic's local aggregates into SQL
(:mod:`.aggregates`, :mod:`.rows`).  Identifiers are never taken from a request: a filter's
column must be one of the table's own columns before it is quoted (:mod:`.dialect`).
May import: :mod:`parties.data`, :mod:`parties.errors` and the core.
"""
