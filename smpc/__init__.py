"""smpc computation core: fixed point, secret sharing, Beaver products, CKKS and protocols.

This package is pure computation: no sockets, no files.  The runtime that
carries its messages between hosts lives in ``parties/`` and is never
imported from here.
"""

__version__ = "0.1.0"
