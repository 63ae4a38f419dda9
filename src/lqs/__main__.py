"""``python -m lqs``: the same as the ``lqs`` command."""

from lqs.cli import main

main()
