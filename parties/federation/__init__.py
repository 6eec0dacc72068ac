"""Local federations and the demo: every node a process on 127.0.0.1, sample data.

Owns: creating a federation directory (CA, certificates, configs), starting and stopping its
nodes (:mod:`.local`), the demo tour (:mod:`.demo`) and its synthetic sample data
(:mod:`.sampledata`).
May import: everything below it -- :mod:`parties.errors`, :mod:`parties._pb`,
:mod:`parties.pki`, :mod:`parties.config`, :mod:`parties.transport`, :mod:`parties.data`,
:mod:`parties.privacy`, :mod:`parties.analyst` -- and the core; never the CLI.
"""
