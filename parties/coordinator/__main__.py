"""``python -m parties.coordinator``: the coordinator."""

import sys

from parties.coordinator.node import main

sys.exit(main())
