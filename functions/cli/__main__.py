"""`python -m functions.cli`: the operator CLI."""

import sys

from functions.cli.main import main

sys.exit(main())
