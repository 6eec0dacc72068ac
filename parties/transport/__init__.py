"""How nodes talk: mutual-TLS gRPC servers and channels, the wire format, sessions, faults.

Owns: TLS credentials and the caller's identity (:mod:`.tls`), chunked payloads and message
limits (:mod:`.wire`), per-session state with deadlines and replay protection
(:mod:`.sessions`), servers with the access guard and the ``Node`` service (:mod:`.server`),
channels to peers and the core's :class:`~smpc.transport.Transport` over gRPC
(:mod:`.channels`), node start-up in the foreground (:mod:`.lifecycle`) and the test-only
fault hook (:mod:`.faults`).
It also owns the control plane (:mod:`.control`): the typed control messages, parsed once
at each service edge, and the seam between a coordinator and the nodes it drives.
May import: :mod:`parties.errors`, :mod:`parties._pb`, :mod:`parties.pki`,
:mod:`parties.config`, :mod:`parties.data` (to parse a request's filter) and the core --
never a role (node, coordinator, dealer) above it.
"""
