"""`python -m spidernet` runs the CLI."""

import sys

from spidernet.cli import main

sys.exit(main())
