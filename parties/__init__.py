"""smpc's runtime: party nodes, the coordinator and the dealer over mutual-TLS gRPC, and the CLI.

The runtime moves the core's messages and enforces each party's own privacy controls; it holds
no math (that is :mod:`smpc`).  Its subpackages, lowest layer first -- each may import only
the ones before it (``tests/unit/test_hygiene.py`` enforces it):

==============  ==========================================================================
``errors``      the one error taxonomy and its gRPC statuses
``pki``         identities, the federation CA and node certificates, secret files
``config``      federation / party / coordinator / dealer configs, a federation directory
``data``        a party's tables and the ``--where`` filter language
``transport``   TLS, wire format, sessions, servers and channels, the control plane
``privacy``     policy gate, budget ledger, hash-chained audit log, data at rest
``node``        the party node (jobs, the ``Party`` service)
``dealer``      the optional separate dealer
``coordinator`` protocols as stage machines; the analysts' ``Coordinator`` service
``analyst``     the analyst's client and CKKS key holder
``federation``  local federations (processes or one process), the demo, sample data
``api``         :class:`parties.api.Federation`, also ``smpc.Federation``
``cli``         the ``smpc`` command
==============  ==========================================================================
"""
