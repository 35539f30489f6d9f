"""`python -m examples.consumer --port PORT`: serve the push endpoint."""

import sys

from .startup import main

sys.exit(main())
