"""Build shim: everything is declared in pyproject.toml but two things.

1. The hot loops of the read path, ``link/etcd/decoding.py``, and of the write
   path, ``link/etcd/encoding.py``, are compiled with mypyc (from mypy, a build
   requirement), each into a C extension that Python imports in place of the
   file; their ``COMPILED`` tells which runs.
   ``LINK_ETCD_COMPILE`` chooses: ``auto`` (the default) compiles when it can
   and otherwise builds pure Python with a warning (no C compiler, not CPython);
   ``1`` compiles or fails the build (the Makefile's venvs, so that CI measures
   and tests the compiled module); ``0`` never compiles.  Editable installs
   build the extension in the source tree (``link/etcd/*.so``, ignored by git):
   after editing one of them, reinstall (``make venv`` does when they changed)
   or the old compiled module keeps running (``tests/test_compiled.py`` says so).
   Each is compiled on its own (``separate=True``), so its support library
   sits beside it in ``link/etcd/`` rather than at the top of site-packages.

2. It adds link.etcd's start-up hook to the root of the wheel, beside the
``link`` package, so that pip installs it into site-packages:

* ``link_etcd_b3j0f.pth``: one line, ``import _link_etcd_hook``, run by
  ``site`` at interpreter start-up;
* ``_link_etcd_hook.py``: puts a finder first in ``sys.meta_path`` that does
  nothing until a ``b3j0f.*`` submodule is imported (see
  ``link/etcd/_b3j0f_compat.py``).

A ``.pth`` file only works at the top of a site directory, which packages and
package data cannot reach, hence the custom ``build_py``. The two files also go
into the sdist (``get_source_files``), so a wheel built from it has them too.

Editable installs (``pip install -e .``) build no ``build_py`` output into
the wheel: setuptools maps the packages to the source tree with a finder of
its own. ``editable_wheel`` is extended to copy the two files into the root
of the editable wheel too (next to the namespace ``.pth`` files it writes
there), through ``_install_namespaces``, a private method of setuptools
(checked with 65.5 and 84.0). Should a later setuptools drop it, an editable install
silently lacks the hook; then call ``link.etcd._b3j0f_compat.install()``
before importing b3j0f.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
HOOK_FILES = ("link_etcd_b3j0f.pth", "_link_etcd_hook.py")
#: Modules compiled with mypyc (paths from the repository root).
COMPILED = ("link/etcd/decoding.py", "link/etcd/encoding.py")
#: ``auto``, ``1`` or ``0`` (see the module docstring).
COMPILE = os.environ.get("LINK_ETCD_COMPILE", "auto")


def _warn(message: str) -> None:
    print(
        f"link.etcd: {message}; installing pure Python (slower reads and writes)", file=sys.stderr
    )


def compiled_extensions() -> list[Any]:
    """The extensions mypyc makes of :data:`COMPILED`, or none (see :data:`COMPILE`)."""
    if COMPILE == "0":
        return []
    try:
        implementation = platform.python_implementation()
        if implementation != "CPython":
            raise RuntimeError(f"mypyc compiles for CPython, not {implementation}")
        from mypyc.build import mypycify  # a build requirement, for this only

        # the modules they import are type-checked by make lint, not here, where
        # link.etcd's dependencies may be missing
        flags = ["--follow-imports=silent"]
        return list(
            mypycify([*flags, *COMPILED], only_compile_paths=COMPILED, opt_level="3", separate=True)
        )
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        if COMPILE == "1":
            raise
        _warn(f"cannot compile {', '.join(COMPILED)} ({exc!r})")
        return []


class build_ext_optional(build_ext):  # type: ignore[misc]  # setuptools ships no types; distutils naming
    """``build_ext`` that, unless ``LINK_ETCD_COMPILE=1``, leaves the pure Python
    modules in place when the C compiler fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if COMPILE == "1":
                raise
            _warn(f"the C compiler failed ({exc!r})")

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if COMPILE == "1":
                raise
            _warn(f"the C compiler failed on {ext.name} ({exc!r})")


class build_py_with_hook(build_py):  # type: ignore[misc]  # setuptools ships no types; distutils naming
    """``build_py`` that also copies :data:`HOOK_FILES` to the wheel root."""

    def run(self) -> None:
        super().run()
        for name in HOOK_FILES:
            self.copy_file(os.path.join(HERE, name), os.path.join(self.build_lib, name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        hooks = [os.path.join(self.build_lib, name) for name in HOOK_FILES]
        return [*super().get_outputs(include_bytecode), *hooks]

    def get_source_files(self) -> list[str]:
        return [*super().get_source_files(), *HOOK_FILES]


class editable_wheel_with_hook(editable_wheel):  # type: ignore[misc]  # setuptools ships no types; distutils naming
    """``editable_wheel`` that also puts :data:`HOOK_FILES` in the wheel root."""

    def _install_namespaces(self, installation_dir: str, pth_prefix: str) -> None:
        super()._install_namespaces(installation_dir, pth_prefix)
        for name in HOOK_FILES:
            shutil.copy(os.path.join(HERE, name), os.path.join(installation_dir, name))


setup(
    ext_modules=compiled_extensions(),
    cmdclass={
        "build_ext": build_ext_optional,
        "build_py": build_py_with_hook,
        "editable_wheel": editable_wheel_with_hook,
    },
)
