"""Run the echo benchmark matrix and print the comparison table.

    python examples/bench/run.py [--quick] [--duration S] [--warmup S] [--impl NAME ...] [--size N ...]
                                 [--conns N ...] [--repeat N] [--no-pin] [--host H] [--malloc STATE]
                                 [--json] [--progress] [--check] [--render FILE]

The benchmark itself ships inside the package (``asock._bench``, with its
servers and the C load client), so that ``asock bench`` runs from an installed
package too; this script runs it from a checkout.  See README.md here.
"""

from __future__ import annotations

import os
import sys

# Run from a checkout without installing: the package lives two levels up.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# The whole module's names, for scripts and tests that load this file (build_loadgen, ...).
from asock._bench import *  # noqa: E402, F403
from asock._bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
