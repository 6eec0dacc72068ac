"""``python -m parties.node``: the party node."""

import sys

from parties.node.party import main

sys.exit(main())
