"""A missing extra names the install command, not a bare ``No module named``."""

import subprocess
import sys
import textwrap

import pytest

BLOCK = textwrap.dedent(
    """
    import sys

    class Missing:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == {root!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

    sys.meta_path.insert(0, Missing())
    try:
        import {module}
    except ModuleNotFoundError as exc:
        print(exc.name)
        print(exc)
    else:
        print("imported")
    """
)


@pytest.mark.parametrize(
    ("module", "root", "extra"),
    [
        ("link.etcd.pydantic_source", "pydantic", "pydantic"),
        ("link.etcd.adapters.pydantic", "pydantic_settings", "pydantic"),
        ("link.etcd.driver", "b3j0f", "b3j0f"),
        ("link.etcd.adapters.b3j0f", "b3j0f", "b3j0f"),
    ],
)
def test_missing_extra_gives_the_install_command(module: str, root: str, extra: str) -> None:
    script = BLOCK.format(module=module, root=root)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    name, message = out.stdout.splitlines()[:2]
    assert name.split(".")[0] == root
    assert f"pip install 'link.etcd[{extra}]'" in message
