"""Only the optional C extension lives here (cffi cannot be declared in
pyproject.toml alone); everything else is in pyproject.toml.

The extension ``fastnn._backends.c._fastnn_c`` is built when a C compiler
is present.  A failed build is a warning: the install succeeds, fastnn runs
on its other backends, and ``fastnn.backends()["c"]`` gives the reason
(kept in ``fastnn/_backends/c/_build_error.txt``).  ``FASTNN_REQUIRE_C=1``
makes a failed build fatal; ``FASTNN_NO_C=1`` skips it.
"""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ERROR_FILE = Path("fastnn", "_backends", "c", "_build_error.txt")


class OptionalBuildExt(build_ext):
    """build_ext whose failure, unless FASTNN_REQUIRE_C=1, is a warning."""

    def _record(self, text):
        for base in {Path(self.build_lib), Path(".")} if not self.inplace else {Path(".")}:
            target = base / ERROR_FILE
            if target.parent.is_dir():
                if text is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_text(text)

    def run(self):
        self._failure = None
        try:
            super().run()
        except Exception as exc:
            self._failed(exc)
        if self._failure is None:
            self._record(None)
            if not self.inplace:
                self._copy_to_checkout()

    def _copy_to_checkout(self):
        """Put the built extension beside its sources too, as an editable install does.

        ``python -m fastnn`` run in the checkout that was installed (the
        README's first command) imports the package from the checkout, not
        from site-packages; without this copy its C backend would be missing.
        """
        for ext in self.extensions:
            built = Path(self.get_ext_fullpath(ext.name))
            target = Path(self.get_ext_filename(ext.name))
            if built.is_file() and target.parent.is_dir():
                shutil.copy2(built, target)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc):
        if os.environ.get("FASTNN_REQUIRE_C") == "1":
            raise exc
        reason = f"{type(exc).__name__}: {exc}".strip()
        self._failure = reason
        self.warn(f"the C backend was not built ({reason}); fastnn works on its other "
                  "backends. Install a C compiler (gcc or clang) and reinstall to get it, "
                  "or set FASTNN_REQUIRE_C=1 to make this an error.")
        self._record(reason)


cffi_modules = [] if os.environ.get("FASTNN_NO_C") == "1" else [
    "fastnn/_backends/c/_build.py:ffibuilder"]

setup(cffi_modules=cffi_modules, cmdclass={"build_ext": OptionalBuildExt})
