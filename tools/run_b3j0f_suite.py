"""Run b3j0f.conf's own test suite under link.etcd's b3j0f compatibility layer.

Usage: ``python tools/run_b3j0f_suite.py [-v]`` with the pinned b3j0f releases
installed (``pip install '.[b3j0f]'``). The tests ship inside the installed
package, in the ``test`` subpackages of ``b3j0f/conf`` (modules named like
the module they test: ``core.py``, ``param.py``...), so they are found on
disk there and run with unittest, after ``link.etcd._b3j0f_compat.install()``
and before anything imports b3j0f, in an empty temporary directory (the
tests write ``logger.log`` there). The layer comes from this working tree.

Prints ``b3j0f.conf: N passed, M failed`` (and skips, if any) last;
exits 1 if a test failed or none ran, 2 if b3j0f.conf is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def find_test_modules(package: str = "b3j0f.conf") -> list[str]:
    """Names of the modules in the ``test`` subpackages of ``package``, sorted.

    Found on disk, without importing anything of b3j0f but its top-level
    ``b3j0f`` namespace package.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed", name=package)
    names = []
    for location in spec.submodule_search_locations:
        root = Path(location)
        for init in root.rglob("test/__init__.py"):
            test_dir = init.parent
            relative = test_dir.relative_to(root).parts
            for module in sorted(test_dir.glob("*.py")):
                if module.name != "__init__.py":
                    names.append(".".join((package, *relative, module.stem)))
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per test")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from link.etcd._b3j0f_compat import install

    install()
    try:
        names = find_test_modules()
    except ModuleNotFoundError as exc:
        print(f"b3j0f.conf suite: {exc}; pip install '.[b3j0f]'", file=sys.stderr)
        return 2

    # The test modules (not the library: the layer fixes its one docstring)
    # have invalid escapes in string literals, which warn when compiled
    # without a bytecode cache and fail under -W error; they are not ours.
    for category in (SyntaxWarning, DeprecationWarning):
        warnings.filterwarnings(
            "ignore", "invalid escape sequence", category, module=r".*[/\\]test[/\\][^/\\]*$"
        )
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2 if args.verbose else 1)
    # b3j0f.conf's logging writes logger.log and its file drivers read
    # configuration files in the current directory: use an empty one.
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="b3j0f-suite-") as tmp:
        os.chdir(tmp)
        try:
            suite = unittest.TestLoader().loadTestsFromNames(names)
            result = runner.run(suite)
        finally:
            os.chdir(cwd)

    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped) + len(result.expectedFailures)
    passed = result.testsRun - failed - skipped
    line = f"b3j0f.conf: {passed} passed, {failed} failed"  # one word before the colon
    if skipped:
        line += f", {skipped} skipped"
    v = sys.version_info
    print(f"Python {v.major}.{v.minor}.{v.micro}, {len(names)} test modules", file=sys.stderr)
    sys.stdout.flush()
    print(line)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
