"""``python -m api.cli``."""

from api.cli import run

run()
