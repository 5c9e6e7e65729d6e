"""The wheel carries the start-up hook and the documented default configuration."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path)]
    built = subprocess.run(
        [*command, str(ROOT)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("link_etcd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "link_etcd_b3j0f.pth" in names  # lazy b3j0f compatibility hook
    assert "_link_etcd_hook.py" in names
    assert any(n.endswith(".data/data/etc/link/etcd/middleware.conf") for n in names)
    assert "link/etcd/py.typed" in names
    assert not any(n.startswith("link/__init__") for n in names)  # PEP 420 namespace
