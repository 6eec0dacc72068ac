"""``python -m smpc_bench`` = ``smpc bench`` (see :mod:`smpc_bench.cli`)."""

import sys

from smpc_bench.cli import main

sys.exit(main())
