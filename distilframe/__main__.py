"""``python -m distilframe``: the same as the ``distilframe`` command."""

from .cli import run

run()
