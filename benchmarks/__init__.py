"""The smpc benchmark suite: CKKS op costs, secret-sharing math, protocols end to end, peers.

Run it with ``smpc bench`` (or ``python -m smpc_bench``); see :mod:`smpc_bench.cli` for the
options.  Every result is *recorded* (JSON, Markdown, PNG plots), never asserted: the numbers
depend on the machine.

The folder ``benchmarks/`` is installed as the package ``smpc_bench`` (``setup.py`` maps it):
a project-specific name, so that installing smpc puts no generic ``benchmarks`` package into
site-packages.  Import it as ``smpc_bench`` (an editable install maps that name to this folder).

Modules:

* :mod:`smpc_bench.ciphertext` -- CKKS operations per preset, the core (``smpc.ckks``) next to
  raw TenSEAL in the same run, with 1 thread and with all cores; ciphertext and context sizes.
* :mod:`smpc_bench.sharing` -- fixed-point encoding, seed-compressed sharing, reconstruction,
  Beaver products and truncation over 10^3..10^7 elements, against plaintext numpy.
* :mod:`smpc_bench.protocols` -- secure sum, mean / variance / covariance and linear /
  logistic inference over real party processes (gRPC + mutual TLS on 127.0.0.1), both
  backends, with a time breakdown, bytes per party and the floor (plaintext numpy on the
  pooled data plus the time to stream the same bytes over one TLS connection).
* :mod:`smpc_bench.peers` -- MPyC (3 parties on loopback) and TenSEAL's row-wise inference,
  each skipped with a note when not installed.

matplotlib, tqdm, mpyc and pyinstrument are optional (``pip install 'smpc[bench]'``): without
them there are no plots, a plain progress line, no MPyC rows and cProfile instead.
"""
