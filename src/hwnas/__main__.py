"""``python -m hwnas`` runs the command line."""

import sys

from hwnas.cli import main

sys.exit(main())
