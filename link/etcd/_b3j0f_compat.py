"""Make the 2016 b3j0f releases import and run, unchanged, on Python 3.11+.

``b3j0f.conf`` 0.3.22, ``b3j0f.utils`` 1.4.4, ``b3j0f.annotation`` 0.3.6 and
``b3j0f.aop`` 0.8.4 (the versions pinned by the ``link.etcd[b3j0f]`` extra)
were written for Python 2.7 and 3.4/3.5. Nothing on disk is edited: a
meta-path finder (:class:`B3j0fCompatFinder`) intercepts the import of the few
modules that need it, rewrites their source in memory (:func:`rewrite`) and
compiles the result under the module's real file name.

Every rewrite (:data:`FIXES`) replaces one exact piece of text of the pinned
release, which must occur exactly once; any other text (another version, a
local patch) fails at import with :class:`B3j0fCompatError` naming the module,
the file and the fix, instead of half-working. A replacement never has more
lines than the text it replaces and is padded with blank lines to the same
count, so line numbers in tracebacks and ``inspect`` stay those of the files.

Activation:

* ``install()`` puts the finder first in ``sys.meta_path`` (idempotent);
* the ``link_etcd_b3j0f.pth`` start-up hook installed with link.etcd (module
  ``_link_etcd_hook``) calls it on the first import of a ``b3j0f.*``
  submodule, so ``from b3j0f.conf import Configurable`` works in a fresh
  interpreter before anything of link.etcd has been imported.

Rewritten modules are compiled at each import (about 15 ms for all of them)
and no bytecode cache is written.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any, NamedTuple

__all__ = [
    "FIXES",
    "PINNED",
    "ArgSpec",
    "B3j0fCompatError",
    "B3j0fCompatFinder",
    "Fix",
    "ParserError",
    "getargspec",
    "install",
    "interception_code",
    "rewrite",
    "uninstall",
]

#: distribution name -> the version whose text :data:`FIXES` matches.
PINNED: dict[str, str] = {
    "b3j0f.conf": "0.3.22",
    "b3j0f.utils": "1.4.4",
    "b3j0f.annotation": "0.3.6",
    "b3j0f.aop": "0.8.4",
}

#: marker attribute of the finder, also checked on finders loaded from another
#: copy of this module and on the start-up hook's finder.
_FINDER_MARK = "_link_etcd_b3j0f_finder"
_HOOK_MARK = "_link_etcd_b3j0f_hook"


class B3j0fCompatError(RuntimeError):
    """A rewrite did not match the source of the installed b3j0f module.

    Raised while importing that module. ``module``, ``path`` and ``fix`` say
    where; the usual cause is a b3j0f version other than :data:`PINNED`.
    """

    def __init__(self, message: str, *, module: str, path: str | None, fix: str) -> None:
        super().__init__(message)
        self.module = module
        self.path = path
        self.fix = fix


class ParserError(Exception):
    """Stand-in for ``parser.ParserError`` (the ``parser`` module left in 3.10).

    b3j0f.conf raises it for bad references and bad parameter values, and its
    tests catch it; all of them import it from here once rewritten.
    """


class ArgSpec(NamedTuple):
    """The 4-tuple of the former ``inspect.getargspec``."""

    args: list[str]
    varargs: str | None
    keywords: str | None
    defaults: tuple[Any, ...] | None


def getargspec(func: Callable[..., Any]) -> ArgSpec:
    """``inspect.getargspec`` as of Python 3.10, removed in 3.11.

    :raises TypeError: ``func`` has no Python signature (like 3.10), or it has
        keyword-only parameters, which the 4-tuple cannot describe. 3.10 raised
        ValueError there, which b3j0f's callers do not catch; with TypeError
        they fall back to their generic path (a ``*args, **kwargs`` wrapper).
        Annotations, which also gave ValueError, are ignored: they do not
        change how arguments bind.
    """
    spec = inspect.getfullargspec(func)
    if spec.kwonlyargs:
        raise TypeError(f"{func!r} has keyword-only parameters, which getargspec cannot describe")
    return ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)


def interception_code(
    source: str, filename: str, consts: Mapping[str, object], freevars: Sequence[str]
) -> CodeType:
    """Compile b3j0f.aop's generated interception function with bound constants.

    ``source`` is the ``def name(...):`` text that ``Joinpoint.apply_pointcut``
    generates; every global name in ``consts`` is bound to its value. b3j0f
    patched ``LOAD_GLOBAL`` into ``LOAD_CONST`` assuming 3-byte instructions
    (wordcode replaced them in 3.6) and called ``CodeType(...)`` with the
    positional arguments of 3.4 (more were added in 3.8 and 3.11). Here the
    names become placeholder string constants in the AST, swapped for the
    values in ``co_consts`` afterwards; a placeholder that is called goes
    through ``.__call__()``, since calling a literal is a SyntaxWarning. The
    function must also have the target's free variables
    (b3j0f swaps ``__code__`` between the two functions, which needs equal
    counts), so it is compiled nested in an outer function whose parameters
    they are, with a ``nonlocal`` statement: the compiler then lays out the
    cells itself. Forging ``co_freevars`` with ``code.replace`` instead gives a
    frame layout that crashes the interpreter when ``f_locals`` is read (as
    debuggers and pytest do) on 3.11 and 3.12.
    """
    tree = ast.parse(source, filename)
    func = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(func, ast.FunctionDef):
        raise ValueError(f"expected the source of one function, got {source!r}")
    placeholders = {name: f"\0link.etcd.b3j0f.const:{name}" for name in consts}

    class _Bind(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            self.generic_visit(node)
            if isinstance(node.func, ast.Constant) and node.func.value in values:
                node.func = ast.Attribute(node.func, "__call__", ast.Load())
            return node

        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in placeholders and isinstance(node.ctx, ast.Load):
                return ast.Constant(placeholders[node.id])
            return node

    values = {placeholder: consts[name] for name, placeholder in placeholders.items()}
    func = _Bind().visit(func)
    if freevars:
        func.body.insert(0, ast.Nonlocal(names=list(freevars)))
    outer = ast.FunctionDef(
        name="_link_etcd_b3j0f_outer",
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(name) for name in freevars],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=[func],
        decorator_list=[],
    )
    module = ast.fix_missing_locations(ast.Module(body=[outer], type_ignores=[]))
    code = compile(module, filename, "exec", dont_inherit=True)
    (outer_code,) = (c for c in code.co_consts if isinstance(c, CodeType))
    (inner,) = (c for c in outer_code.co_consts if isinstance(c, CodeType))
    if len(inner.co_freevars) != len(freevars):  # pragma: no cover - compiler invariant
        raise AssertionError(f"free variables {inner.co_freevars} != {tuple(freevars)}")
    bound = tuple(values.get(c, c) if type(c) is str else c for c in inner.co_consts)
    # Only co_consts and the name shown in tracebacks change: the layout of
    # locals and cells is the compiler's own.
    return inner.replace(co_consts=bound, co_qualname=func.name)


@dataclass(frozen=True)
class Fix:
    """Replace ``old``, which must occur exactly once, by ``new``; ``why`` says why."""

    why: str
    old: str
    new: str

    def __post_init__(self) -> None:
        if self.new.count("\n") > self.old.count("\n"):
            raise ValueError(f"replacement adds lines ({self.why})")


_FROM_HERE = f"from {__name__} import"

#: module name -> the rewrites of its source, for the pinned releases.
FIXES: dict[str, tuple[Fix, ...]] = {
    "b3j0f.utils.runtime": (
        Fix(
            why="_make_constants decodes pre-3.6 bytecode (3 bytes per op) and runs at import "
            "('optimize thyself!'), raising IndexError; it is only an optimisation, so it "
            "returns the function unchanged",
            old='        Be sure global attributes to transform are not resolved dynamically."""\n'
            "\n"
            "    result = func\n",
            new='        Be sure global attributes to transform are not resolved dynamically."""\n'
            "\n"
            "    return func  # link.etcd b3j0f compat: pre-3.6 bytecode optimiser disabled\n",
        ),
    ),
    "b3j0f.utils.iterable": (
        Fix(
            why="the ABC aliases in collections were removed in 3.10",
            old="from collections import Iterable\n",
            new="from collections.abc import Iterable\n",
        ),
    ),
    "b3j0f.utils.property": (
        Fix(
            why="the ABC aliases in collections were removed in 3.10",
            old="from collections import Hashable\n",
            new="from collections.abc import Hashable\n",
        ),
    ),
    "b3j0f.aop.joinpoint.core": (
        Fix(
            why="inspect.getargspec was removed in 3.11",
            old="    getargspec, isroutine, getmro\n)\n",
            new=f"    isroutine, getmro\n); {_FROM_HERE} getargspec, interception_code\n",
        ),
        Fix(
            why="inspect.getfile raises OSError, no longer TypeError, for a class of a module "
            "without __file__ (__main__ in a REPL or python -c)",
            old="            __file__ = getfile(target)\n        except TypeError:\n",
            new="            __file__ = getfile(target)\n        except (TypeError, OSError):\n",
        ),
        Fix(
            why="the interception function was built by patching LOAD_GLOBAL into LOAD_CONST "
            "in pre-3.6 bytecode and calling CodeType(...) with the 3.4 arguments; see "
            "interception_code",
            old="""\
        # compile newcodestr
        code = compile(newcodestr, __file__, 'single')

        _globals = {}

        # define the code with the new function
        exec(code, _globals)

        # get new code
        newco = _globals[name].__code__

        # get new consts list
        newconsts = list(newco.co_consts)

        if PY3:
            newcode = list(newco.co_code)
        else:
            newcode = map(ord, newco.co_code)

        consts_values = {joinpoint: self, start: self.start}

        # change LOAD_GLOBAL to LOAD_CONST
        index = 0
        newcodelen = len(newcode)
        while index < newcodelen:
            if newcode[index] == LOAD_GLOBAL:
                oparg = newcode[index + 1] + (newcode[index + 2] << 8)
                name = newco.co_names[oparg]
                if name in consts_values:
                    const_value = consts_values[name]
                    if const_value in newconsts:
                        pos = newconsts.index(const_value)
                    else:
                        pos = len(newconsts)
                        newconsts.append(consts_values[name])
                    newcode[index] = LOAD_CONST
                    newcode[index + 1] = pos & 0xFF
                    newcode[index + 2] = pos >> 8
                    if name == start:
                        break  # stop when start is encountered
            index += 1

        # get code string
        codestr = bytes(newcode) if PY3 else join(map(chr, newcode))

        # get vargs
        vargs = [
            newco.co_argcount, newco.co_nlocals, newco.co_stacksize,
            newco.co_flags, codestr, tuple(newconsts), newco.co_names,
            newco.co_varnames, newco.co_filename, newco.co_name,
            newco.co_firstlineno, newco.co_lnotab,
            getattr(function.__code__, 'co_freevars', ()),
            newco.co_cellvars
        ]
        if PY3:
            vargs.insert(1, newco.co_kwonlyargcount)

        # instanciate a new code object
        codeobj = type(newco)(*vargs)
""",
            new="""\
        # compile newcodestr (link.etcd b3j0f compat: no bytecode patching)
        codeobj = interception_code(
            newcodestr, __file__, {joinpoint: self, start: self.start},
            getattr(function.__code__, 'co_freevars', ()))
""",
        ),
    ),
    "b3j0f.annotation": (
        Fix(
            why="'async' is a keyword since 3.7, so 'from .async import' is a SyntaxError; "
            "the submodule itself compiles and is imported by name",
            old="from .async import (\n"
            "    Synchronized, SynchronizedClass, Asynchronous, TimeOut, Wait, Observable\n"
            ")\n",
            new="_async = __import__('importlib').import_module(__name__ + '.async')\n"
            "Synchronized, SynchronizedClass, Asynchronous, TimeOut, Wait, Observable = (\n"
            "    _async.Synchronized, _async.SynchronizedClass, _async.Asynchronous,"
            " _async.TimeOut, _async.Wait, _async.Observable); del _async\n",
        ),
    ),
    "b3j0f.conf.parser.core": (
        Fix(
            why="the module docstring has invalid escapes (\\*, \\%, \\.): a warning at each "
            "compile (SyntaxWarning shown by default since 3.12), an error under -W error; "
            "a raw string has the same value",
            old='\n"""Parameter parser module.\n',
            new='\nr"""Parameter parser module.\n',
        ),
        Fix(
            why="the ABC aliases in collections were removed in 3.10",
            old="from collections import Iterable\n",
            new="from collections.abc import Iterable\n",
        ),
        Fix(
            why="the parser module was removed in 3.10",
            old="from parser import ParserError\n",
            new=f"{_FROM_HERE} ParserError\n",
        ),
    ),
    "b3j0f.conf.model.param": (
        Fix(
            why="the parser module was removed in 3.10",
            old="from parser import ParserError\n",
            new=f"{_FROM_HERE} ParserError\n",
        ),
        Fix(
            why="the ABC aliases in collections were removed in 3.10",
            old="from collections import Iterable\n",
            new="from collections.abc import Iterable\n",
        ),
    ),
    "b3j0f.conf.configurable.core": (
        Fix(
            why="inspect.getargspec was removed in 3.11",
            old="from inspect import getargspec, isclass, isroutine, isfunction, ismethod\n",
            new=f"from inspect import isclass, isroutine, isfunction, ismethod; "
            f"{_FROM_HERE} getargspec\n",
        ),
        Fix(
            why="staticmethod objects are callable since 3.10: @Configurable above "
            "@staticmethod then tried to weave into the staticmethod object (AttributeError "
            "on __code__) instead of only annotating it, as before 3.10",
            old="    def _bind_target(self, target, ctx, *args, **kwargs):\n\n"
            "        if callable(target):\n",
            new="    def _bind_target(self, target, ctx, *args, **kwargs):\n\n"
            "        if callable(target) and not isinstance(target, staticmethod):\n",
        ),
        Fix(
            why="staticmethod objects are callable since 3.10: applying a configuration to an "
            "annotated staticmethod called it and configured its result, unlike before 3.10",
            old="        if callconf and callable(target):\n",
            new="        if callconf and callable(target)"
            " and not isinstance(target, staticmethod):\n",
        ),
    ),
    # b3j0f.conf's own test suite (tools/run_b3j0f_suite.py) imports these.
    "b3j0f.conf.model.test.param": (
        Fix(
            why="the parser module was removed in 3.10",
            old="from parser import ParserError\n",
            new=f"{_FROM_HERE} ParserError\n",
        ),
    ),
}


def _distribution(module: str) -> str:
    return ".".join(module.split(".")[:2])


def rewrite(module: str, source: str, path: str | None = None) -> str:
    """Apply the :data:`FIXES` of ``module`` to its ``source``.

    :raises B3j0fCompatError: a fix's text does not occur exactly once.
    """
    for fix in FIXES.get(module, ()):
        count = source.count(fix.old)
        if count != 1:
            dist = _distribution(module)
            try:
                from importlib.metadata import version

                installed = version(dist)
            except Exception:  # noqa: BLE001 - only for the message
                installed = "unknown"
            first = fix.old.strip().splitlines()[0]
            raise B3j0fCompatError(
                f"link.etcd cannot adapt {module} ({path or 'source given'}) to Python "
                f"{sys.version_info.major}.{sys.version_info.minor}: the text to fix was found "
                f"{count} times instead of once (fix: {fix.why}; text starts {first!r}). "
                f"It matches {dist}=={PINNED.get(dist, '?')} as released; installed: "
                f"{installed}. Install the pinned versions: pip install 'link.etcd[b3j0f]'.",
                module=module,
                path=path,
                fix=fix.why,
            )
        padding = "\n" * (fix.old.count("\n") - fix.new.count("\n"))
        source = source.replace(fix.old, fix.new + padding)
    return source


class _RewritingLoader(importlib.abc.InspectLoader):
    """Loads a module from the source of ``loader``, rewritten by :func:`rewrite`."""

    def __init__(self, loader: Any, origin: str | None) -> None:
        self._loader = loader
        self._origin = origin

    def get_filename(self, fullname: str) -> str:
        filename: str = self._loader.get_filename(fullname)
        return filename

    def is_package(self, fullname: str) -> bool:
        return bool(self._loader.is_package(fullname))

    def get_source(self, fullname: str) -> str:
        source = self._loader.get_source(fullname)
        if source is None:
            raise ImportError(f"no source for {fullname} to adapt", name=fullname)
        return rewrite(fullname, source, self._origin)

    def get_code(self, fullname: str) -> CodeType:
        # Never the release's cached bytecode (it is of the text before the
        # rewrite), and none is written.
        return compile(
            self.get_source(fullname), self._origin or f"<{fullname}>", "exec", dont_inherit=True
        )

    def exec_module(self, module: ModuleType) -> None:
        exec(self.get_code(module.__name__), module.__dict__)


class B3j0fCompatFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of :data:`FIXES` with the other finders and rewrites them."""

    _link_etcd_b3j0f_finder = True

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in FIXES:
            return None
        for finder in list(sys.meta_path):
            if getattr(finder, _FINDER_MARK, False) or getattr(finder, _HOOK_MARK, False):
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec: importlib.machinery.ModuleSpec | None = (
                None if find_spec is None else find_spec(fullname, path, target)
            )
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "get_source"):
            raise ImportError(
                f"link.etcd cannot adapt {fullname}: its loader {spec.loader!r} gives no source",
                name=fullname,
            )
        spec.loader = _RewritingLoader(spec.loader, spec.origin)
        return spec

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {', '.join(sorted(PINNED))}>"


def install() -> B3j0fCompatFinder:
    """Put the finder first in ``sys.meta_path``; return it.

    Idempotent: an installed finder (even from another copy of this module) is
    returned as is. Removes the start-up hook's finder, whose job is done.
    Must run before the first import of a module of :data:`FIXES`; modules
    already imported are not touched.
    """
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, _HOOK_MARK, False)]
    for finder in sys.meta_path:
        if getattr(finder, _FINDER_MARK, False):
            return finder  # type: ignore[return-value]
    finder = B3j0fCompatFinder()
    sys.meta_path.insert(0, finder)
    return finder


def uninstall() -> None:
    """Remove the finder (and the start-up hook's) from ``sys.meta_path``."""
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if not (getattr(f, _FINDER_MARK, False) or getattr(f, _HOOK_MARK, False))
    ]
