"""A party's data: tables from its files and the ``--where`` filter language.

Owns: reading sources into typed columns (:mod:`.sources`) and parsing and evaluating row
filters (:mod:`.filters`) -- never as code or SQL.
May import: :mod:`parties.errors` and the core.
"""
