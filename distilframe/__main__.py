"""``python -m distilframe``: the same as the ``distilframe`` command."""

import sys

from .cli import main

sys.exit(main())
