"""Start-up hook of link.etcd, run by ``link_etcd_b3j0f.pth`` in site-packages.

It only puts a small finder first in ``sys.meta_path``; that finder does
nothing until a ``b3j0f.*`` submodule is imported, then installs link.etcd's
b3j0f compatibility layer (``link.etcd._b3j0f_compat``) and removes itself.
So ``from b3j0f.conf import Configurable`` works on Python 3.11+ before
anything of link.etcd is imported, and an interpreter that never imports
b3j0f pays for one string test per import.

This module is top-level (not under ``link``) so that the ``.pth`` line does
not import ``link.etcd``. It imports nothing beyond ``sys`` until then.

PYTEST_DONT_REWRITE: pytest marks every module of the distribution that
provides the ``link.etcd.testing`` plugin for assertion rewriting, and warns
about this one, which the ``.pth`` imported before pytest started.
"""

import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


class _LazyB3j0fFinder:
    """Installs the compatibility layer on the first import of a b3j0f submodule."""

    _link_etcd_b3j0f_hook = True

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None" = None,
        target: "ModuleType | None" = None,
    ) -> "ModuleSpec | None":
        # The b3j0f package itself needs no rewrite: waiting for a submodule
        # means that a missing b3j0f costs nothing more than usual.
        if not fullname.startswith("b3j0f."):
            return None
        from importlib import import_module

        try:
            compat = import_module("link.etcd._b3j0f_compat")
        except ModuleNotFoundError as exc:
            if exc.name not in ("link", "link.etcd", "link.etcd._b3j0f_compat"):
                raise
            # link.etcd was removed but this hook was left behind: stand aside.
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
            return None
        finder = compat.install()  # also removes this finder
        spec: ModuleSpec | None = finder.find_spec(fullname, path, target)
        return spec

    def __repr__(self) -> str:
        return "<link.etcd b3j0f start-up hook>"


def install() -> None:
    """Put the lazy finder first in ``sys.meta_path`` (idempotent)."""
    if not any(getattr(f, "_link_etcd_b3j0f_hook", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyB3j0fFinder())


install()
