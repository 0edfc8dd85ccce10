"""``python -m skftr``: the same as the ``skftr`` command."""
import sys

from .cli import main

sys.exit(main())
