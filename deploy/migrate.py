"""Migrate service databases to head: `python deploy/migrate.py [identity card bank transit]`.

Used by deployment jobs; reads the same SSCARD_* variables as the services.
"""

import sys

from services.platform.cli import main

sys.exit(main(["migrate", *sys.argv[1:]]))
