"""`python -m nasdun`: the command line, as the `nasdun` script runs it."""

import sys

from nasdun.interfaces.cli import main

sys.exit(main())
