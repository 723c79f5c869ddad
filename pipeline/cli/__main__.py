"""`python -m pipeline.cli` runs the tenantwatch command line."""

import sys

from pipeline.cli import main

sys.exit(main())
