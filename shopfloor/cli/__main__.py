"""`python -m shopfloor.cli`."""

import os

from shopfloor.cli import main

os.environ.setdefault("PYTHONUNBUFFERED", "1")
main()
