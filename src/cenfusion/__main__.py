"""``python -m cenfusion`` (also what ``torchrun -m cenfusion`` runs)."""

import sys

from cenfusion.cli import main

sys.exit(main())
