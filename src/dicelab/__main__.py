"""``python -m dicelab`` runs the command line."""

import sys

from dicelab.cli import main

sys.exit(main())
