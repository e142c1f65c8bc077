"""``python -m asock``: see ``asock._cli``."""

from ._cli import main

raise SystemExit(main())
