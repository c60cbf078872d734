"""``python -m gateway``: the same command line as ``webhook-gateway``."""

import sys

from gateway.cli import main

sys.exit(main())
