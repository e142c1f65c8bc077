"""The build's one addition to pyproject.toml: the optional C extension ``asock._speedups``.

It holds ``asock.sync.socket``'s hot methods (``recv``, ``recv_into``,
``send``, ``sendall``).  It is optional: where it cannot be built (no C
compiler, no Python headers, a platform without poll()), the build says so
and carries on, and ``asock.sync`` uses its pure-Python methods, which do the
same.  ``ASOCK_NO_EXTENSIONS=1`` at run time also keeps the pure-Python ones.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class optional_build_ext(build_ext):
    """build_ext that reports a failure to build the extension and carries on without it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler set-up itself failed
            self._skipped(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skipped(exc)

    def _skipped(self, exc: Exception) -> None:
        print(
            f"WARNING: asock's optional C extension was not built ({type(exc).__name__}: {exc}); "
            "asock.sync uses its pure-Python methods instead",
            file=sys.stderr,
        )


setup(
    ext_modules=[Extension("asock._speedups", ["asock/_speedups.c"], optional=True)],
    cmdclass={"build_ext": optional_build_ext},
)
