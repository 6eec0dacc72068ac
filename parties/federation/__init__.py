"""Local federations and the demo: every node a process on 127.0.0.1, sample data.

Owns: creating a federation directory (CA, certificates, configs), starting and stopping its
nodes as processes (:mod:`.local`), a whole federation in one process for unit tests
(:mod:`.inprocess`), the demo tour (:mod:`.demo`) and its synthetic sample data
(:mod:`.sampledata`).
May import: everything below it -- :mod:`parties.errors`, :mod:`parties._pb`,
:mod:`parties.pki`, :mod:`parties.config`, :mod:`parties.transport`, :mod:`parties.data`,
:mod:`parties.privacy`, the roles (:mod:`parties.node`, :mod:`parties.dealer`,
:mod:`parties.coordinator`, :mod:`parties.analyst`) -- and the core; never the CLI.
"""
