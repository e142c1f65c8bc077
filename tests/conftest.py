"""The suite's configuration: every async test runs on each event loop asock supports.

While the suite moves to anyio's pytest plugin (which adds trio),
``ASOCK_TEST_BACKENDS=anyio python -m pytest -p no:asyncio -o anyio_mode=auto``
runs it that way (``_conftest_anyio.py``); otherwise pytest-asyncio runs it on
asyncio's default loop and uvloop (``_conftest_asyncio.py``).
"""

import os

if os.environ.get("ASOCK_TEST_BACKENDS") == "anyio":
    from _conftest_anyio import *  # noqa: F403
else:
    from _conftest_asyncio import *  # noqa: F403
