"""Echo servers for the benchmark, one implementation per process.

    python examples/bench/servers.py IMPL [--host H] [--port P] [--cpu N] [--cert PEM] [--warm-malloc]
                                          [--profile FILE]

prints ``READY <port>`` on stdout once it listens, or ``SKIP <reason>``, and
echoes until SIGTERM or SIGINT.  The servers ship inside the package
(``asock._bench_servers``), where ``asock bench`` finds them; this script runs
them from a checkout.  See README.md here.
"""

from __future__ import annotations

import os
import sys

# Run from a checkout without installing: the package lives two levels up.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from asock._bench_servers import *  # noqa: E402, F403
from asock._bench_servers import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
