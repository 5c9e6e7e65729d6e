"""link.etcd's compatibility layer for the 2016 b3j0f releases (``link.etcd._b3j0f_compat``).

Imports of b3j0f happen in subprocesses: a fresh interpreter is the only way
to see start-up and import order, and the layer rewrites modules once per
process. Each subprocess gets this repository first on PYTHONPATH (so the
layer under test is the working tree's) and starts by removing any start-up
hook finder an installed link.etcd put in ``sys.meta_path``. The ``.pth`` hook
is then tested without installing anything: a temporary directory holding a
copy of ``link_etcd_b3j0f.pth`` and ``_link_etcd_hook.py`` is made a site
directory with ``site.addsitedir``, which processes ``.pth`` files exactly as
start-up does for site-packages.

b3j0f's own suite runs separately: ``python tools/run_b3j0f_suite.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path

import pytest

if importlib.util.find_spec("b3j0f") is None or importlib.util.find_spec("b3j0f.conf") is None:
    # Not pytest.importorskip("b3j0f.conf"): without the layer that import
    # fails with ImportError, which would turn a broken layer into a skip.
    pytest.skip("b3j0f.conf is not installed: pip install '.[b3j0f]'", allow_module_level=True)

from link.etcd._b3j0f_compat import (  # after the skip
    FIXES,
    PINNED,
    B3j0fCompatError,
    Fix,
    getargspec,
    rewrite,
)

REPO = Path(__file__).resolve().parent.parent

#: first lines of every subprocess: no start-up hook left from an installation.
PRELUDE = """\
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "_link_etcd_b3j0f_hook", False)]
sys.modules.pop("_link_etcd_hook", None)
"""

#: activate the hook from a copy of the .pth in a site directory, as at start-up.
VIA_PTH = """\
import site
sys.path.insert(0, {site_dir!r})
site.addsitedir({site_dir!r})
assert "_link_etcd_hook" in sys.modules and sys.modules["_link_etcd_hook"].__file__.startswith(
    {site_dir!r}
), "the .pth did not run the hook"
"""


def run_python(
    code: str, cwd: Path, *flags: str, prelude: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("B3J0F_CONF_DIR", None)
    source = (PRELUDE if prelude else "") + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, *flags, "-c", source],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def script(*parts: str) -> str:
    """Concatenate code pieces, each dedented on its own."""
    return "".join(textwrap.dedent(part) for part in parts)


def check_python(code: str, cwd: Path, *flags: str, prelude: bool = True) -> str:
    proc = run_python(code, cwd, *flags, prelude=prelude)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A directory with copies of the start-up hook's two files."""
    path = tmp_path / "site"
    path.mkdir()
    for name in ("link_etcd_b3j0f.pth", "_link_etcd_hook.py"):
        shutil.copy(REPO / name, path / name)
    return path


def source_path(module: str) -> Path:
    """File of a b3j0f module, found without importing anything but ``b3j0f``."""
    spec = importlib.util.find_spec("b3j0f")
    assert spec is not None
    assert spec.submodule_search_locations
    parts = module.split(".")[1:]
    for location in spec.submodule_search_locations:
        base = Path(location, *parts)
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(module)


def names_imported(importtime_stderr: str) -> list[str]:
    """Module names in the output of ``python -X importtime``."""
    return [
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


# --- the rewrites, on the installed release's text ---------------------------


@pytest.mark.parametrize("module", sorted(FIXES))
def test_rewrite_matches_installed_release(module: str) -> None:
    source = source_path(module).read_text(encoding="utf-8")
    rewritten = rewrite(module, source)
    assert rewritten != source
    assert rewritten.count("\n") == source.count("\n"), "line numbers must not move"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as python -W error: no invalid escape left
        compile(rewritten, str(source_path(module)), "exec", dont_inherit=True)


def test_docstring_fix_keeps_the_value() -> None:
    module = "b3j0f.conf.parser.core"
    source = source_path(module).read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = ast.get_docstring(ast.parse(source), clean=False)
    after = ast.get_docstring(ast.parse(rewrite(module, source)), clean=False)
    assert before is not None
    assert before == after


def test_mismatch_raises_a_clear_error() -> None:
    module = "b3j0f.utils.runtime"
    source = source_path(module).read_text(encoding="utf-8")
    altered = source.replace("    result = func\n", "    result = func  # patched\n", 1)
    assert altered != source
    with pytest.raises(B3j0fCompatError) as info:
        rewrite(module, altered, "runtime.py")
    message = str(info.value)
    assert "b3j0f.utils.runtime" in message
    assert "runtime.py" in message
    assert f"b3j0f.utils=={PINNED['b3j0f.utils']}" in message
    assert "found 0 times" in message
    assert "link.etcd[b3j0f]" in message
    assert info.value.module == module
    assert "_make_constants" in info.value.fix


def test_text_found_twice_is_a_mismatch_too() -> None:
    module = "b3j0f.utils.iterable"
    source = source_path(module).read_text(encoding="utf-8")
    doubled = source + "\nfrom collections import Iterable\n"
    with pytest.raises(B3j0fCompatError, match="found 2 times"):
        rewrite(module, doubled)


def test_a_fix_may_not_add_lines() -> None:
    with pytest.raises(ValueError, match="adds lines"):
        Fix(why="bad", old="a\n", new="a\nb\n")


def test_unknown_module_is_left_alone() -> None:
    assert rewrite("b3j0f.utils.version", "text") == "text"


def test_getargspec() -> None:
    def f(a, b=1, *args, **kwargs):  # type: ignore[no-untyped-def]
        pass

    def annotated(a: int, b: str = "") -> None:
        pass

    def kwonly(a, *, b):  # type: ignore[no-untyped-def]
        pass

    assert getargspec(f) == (["a", "b"], "args", "kwargs", (1,))
    assert getargspec(f).args == ["a", "b"]
    assert getargspec(annotated) == (["a", "b"], None, None, ("",))
    with pytest.raises(TypeError):
        getargspec(kwonly)
    with pytest.raises(TypeError):
        getargspec(42)  # type: ignore[arg-type]


# --- b3j0f in a fresh interpreter ---------------------------------------------

IMPORT = "from b3j0f.conf import Configurable, category, Parameter\n"


def test_without_the_layer_b3j0f_does_not_import(tmp_path: Path) -> None:
    """The baseline: what the layer is for (and proof the prelude disables it)."""
    proc = run_python(IMPORT, tmp_path)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr or "SyntaxError" in proc.stderr or "Error" in proc.stderr


def test_b3j0f_imported_first_through_the_pth_hook(tmp_path: Path, site_dir: Path) -> None:
    out = check_python(
        script(
            VIA_PTH.format(site_dir=str(site_dir)),
            """
        assert "link.etcd._b3j0f_compat" not in sys.modules  # lazy until b3j0f
        """,
            IMPORT,
            """
        hooks = [f for f in sys.meta_path if getattr(f, "_link_etcd_b3j0f_hook", False)]
        finders = [f for f in sys.meta_path if getattr(f, "_link_etcd_b3j0f_finder", False)]
        assert not hooks and len(finders) == 1, sys.meta_path
        print("ok")
        """,
        ),
        tmp_path,
    )
    assert out.strip() == "ok"


def test_explicit_install_first_is_idempotent(tmp_path: Path) -> None:
    out = check_python(
        script(
            """
        import link.etcd._b3j0f_compat as compat
        first = compat.install()
        assert compat.install() is first
        """,
            IMPORT,
            """
        assert compat.install() is first
        assert sum(getattr(f, "_link_etcd_b3j0f_finder", False) for f in sys.meta_path) == 1
        print("ok")
        """,
        ),
        tmp_path,
    )
    assert out.strip() == "ok"


def test_install_after_the_hook_replaces_it(tmp_path: Path, site_dir: Path) -> None:
    check_python(
        script(
            VIA_PTH.format(site_dir=str(site_dir)),
            """
        import link.etcd._b3j0f_compat as compat
        compat.install()
        assert not any(getattr(f, "_link_etcd_b3j0f_hook", False) for f in sys.meta_path)
        """,
            IMPORT,
        ),
        tmp_path,
    )


CONFIGURABLE = """
import link.etcd._b3j0f_compat
link.etcd._b3j0f_compat.install()
from b3j0f.conf import Configurable, category, Parameter
from b3j0f.conf.driver import JSONConfDriver

@Configurable(paths='x.conf', conf=category('C', Parameter(name='p', ptype=int)))
class FromFile(object):
    pass

@Configurable(
    paths='{"C": {"p": "5"}}', drivers=[JSONConfDriver()],
    conf=category('C', Parameter(name='p', ptype=int)),
)
class InMemory(object):
    def __init__(self, p=None):  # injected into the constructor, not set
        self.got = p

def make():
    offset = 10  # a closure: the interception code must keep the cell

    @Configurable(conf=category('C', Parameter(name='p', ptype=int, value=7)))
    def function(p=None):
        return p + offset
    return function

obj = FromFile()
assert obj.p == 3 and type(obj.p) is int, obj.p
assert InMemory().got == 5 and not hasattr(InMemory(), 'p')
assert make()() == 17
print("ok")
"""


def test_configurable_class_with_a_file_and_an_in_memory_driver(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text('{"C": {"p": "3"}}')
    assert check_python(CONFIGURABLE, tmp_path).strip() == "ok"
    # b3j0f.conf logs into the current directory: the subprocess ran in tmp_path.
    assert not (REPO / "logger.log").exists()


def test_class_defined_in_python_c(tmp_path: Path) -> None:
    """inspect.getfile raises OSError for classes of __main__ without a file."""
    check_python(
        """
        import link.etcd._b3j0f_compat as compat
        compat.install()
        from b3j0f.conf import Configurable, Parameter

        @Configurable(conf=Parameter("p", value=1))
        class A(object):
            def __init__(self, p=None):
                self.q = p

        assert A().q == 1
        """,
        tmp_path,
    )


def test_configurable_above_staticmethod_only_annotates(tmp_path: Path) -> None:
    """As before 3.10: no weaving into the staticmethod object, no call by applyconfiguration."""
    check_python(
        """
        import link.etcd._b3j0f_compat as compat
        compat.install()
        from b3j0f.conf import Configurable, Parameter, applyconfiguration

        calls = []

        class B(object):
            @Configurable(conf=Parameter("p", value=1))
            @staticmethod
            def f(p=None):
                calls.append(p)
                return p

        assert B.f() is None and B().f() is None and calls == [None, None]
        static = B.__dict__["f"]
        assert Configurable.get_annotations(static)
        assert applyconfiguration(targets=[static], callconf=True) == [static]
        assert calls == [None, None]
        """,
        tmp_path,
    )


def test_woven_closures_and_methods_survive_reading_f_locals(tmp_path: Path) -> None:
    """A forged co_freevars would crash here on 3.11 and 3.12 (hence a subprocess)."""
    check_python(
        """
        import link.etcd._b3j0f_compat as compat
        compat.install()
        from b3j0f.aop import weave, unweave

        def read_all_frames(joinpoint):
            frame = sys._getframe()
            while frame is not None:
                frame.f_locals
                frame = frame.f_back
            return joinpoint.proceed()

        def outer():
            k = 10
            def inner(a, b=2, *args, **kwargs):
                return a + b + k + len(args) + len(kwargs)
            return inner

        fn = outer()
        weave(fn, advices=[read_all_frames])
        assert fn(1) == 13 and fn(1, b=3, x=4) == 15
        unweave(fn)
        assert fn(1) == 13

        class Base(object):
            def m(self, x):
                return x

        class C(Base):
            def m(self, x):
                return super().m(x) * 2  # __class__ cell

        weave(C.m, advices=[read_all_frames], ctx=C)
        assert C().m(3) == 6

        def kwonly(a, *, b=3):
            return a + b

        weave(kwonly, advices=[read_all_frames])
        assert kwonly(1, b=4) == 5
        """,
        tmp_path,
    )


def test_no_warning_under_w_error(tmp_path: Path) -> None:
    """No cached bytecode (pycache_prefix): every module compiles, as after --no-compile."""
    check_python(
        """
        import link.etcd._b3j0f_compat as compat
        compat.install()
        import b3j0f.conf, b3j0f.annotation, b3j0f.aop, b3j0f.utils.property
        """,
        tmp_path,
        "-W",
        "error",
        "-X",
        f"pycache_prefix={tmp_path / 'pycache'}",
    )


def test_mismatch_fails_at_import(tmp_path: Path) -> None:
    out = check_python(
        """
        import link.etcd._b3j0f_compat as compat
        compat.FIXES["b3j0f.utils.runtime"] = (
            compat.Fix(why="simulated", old="not in the file\\n", new="x\\n"),
        )
        compat.install()
        try:
            import b3j0f.conf
        except compat.B3j0fCompatError as exc:
            assert exc.module == "b3j0f.utils.runtime" and exc.fix == "simulated"
            print("raised")
        """,
        tmp_path,
    )
    assert out.strip() == "raised"


# --- the start-up hook --------------------------------------------------------


def test_startup_imports_neither_b3j0f_nor_link_etcd(tmp_path: Path) -> None:
    """Whatever this environment installed (an installed link.etcd's .pth included)."""
    proc = run_python("pass", tmp_path, "-X", "importtime", prelude=False)
    assert proc.returncode == 0, proc.stderr
    names = names_imported(proc.stderr)
    assert names, "no -X importtime output"
    assert not [n for n in names if n.startswith(("b3j0f", "link"))], names


def test_pth_hook_is_lazy(tmp_path: Path, site_dir: Path) -> None:
    """The .pth adds one module to start-up: the hook, which imports nothing."""
    empty = tmp_path / "empty-site"
    empty.mkdir()
    (empty / "baseline.pth").write_text("# reading a .pth has a cost of its own\n")
    without = run_python(
        f"import site; site.addsitedir({str(empty)!r})", tmp_path, "-X", "importtime"
    )
    with_hook = run_python(VIA_PTH.format(site_dir=str(site_dir)), tmp_path, "-X", "importtime")
    assert without.returncode == 0, without.stderr
    assert with_hook.returncode == 0, with_hook.stderr
    # Counters: an installed link.etcd's .pth imported the hook already once.
    added = Counter(names_imported(with_hook.stderr)) - Counter(names_imported(without.stderr))
    assert added == Counter({"_link_etcd_hook": 1}), added


def test_hook_is_silent_without_b3j0f(tmp_path: Path) -> None:
    """-S: no site-packages, so no b3j0f; the layer is not even loaded."""
    check_python(
        """
        import _link_etcd_hook
        try:
            import b3j0f.conf
        except ModuleNotFoundError as exc:
            assert exc.name == "b3j0f", exc.name
        else:
            raise AssertionError("b3j0f importable with -S")
        assert "link.etcd._b3j0f_compat" not in sys.modules
        import json  # other imports go on as usual
        """,
        tmp_path,
        "-S",
    )


def test_hook_left_behind_without_link_etcd_stands_aside(tmp_path: Path, site_dir: Path) -> None:
    check_python(
        script(
            """
        sys.modules["link.etcd._b3j0f_compat"] = None  # as if link.etcd were uninstalled
        """,
            VIA_PTH.format(site_dir=str(site_dir)),
            """
        import b3j0f.utils.version  # needs no rewrite
        assert not any(getattr(f, "_link_etcd_b3j0f_hook", False) for f in sys.meta_path)
        """,
        ),
        tmp_path,
    )
