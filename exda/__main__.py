"""`python -m exda ...` (also what `torchrun -m exda train ...` runs)."""

import sys

from exda.cli import main

sys.exit(main())
