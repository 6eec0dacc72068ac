"""``python -m parties.dealer``: the dealer."""

import sys

from parties.dealer.node import main

sys.exit(main())
