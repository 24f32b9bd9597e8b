"""kernels/ installs as ``tinyeffnet.kernels`` and kernels/cuda/ as ``tinyeffnet.kernels.cuda`` (a bare
top-level ``kernels`` would clash with a PyPI package of that name), both in the editable install and in a
built wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = "import tinyeffnet.kernels.depthwise as d, importlib.util as u; print(d.__file__); print(u.find_spec('kernels'))"


def test_editable_install_imports_kernels_under_the_package(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, check=True)
    path, spec = out.stdout.split("\n")[:2]
    assert Path(path).parent.name in ("kernels",) and spec == "None"


def test_built_wheel_ships_kernels_inside_the_package(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("tinyeffnet-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tinyeffnet/kernels/depthwise.py" in names and "tinyeffnet/kernels/__init__.py" in names
    assert "tinyeffnet/kernels/cuda/depthwise.py" in names and "tinyeffnet/kernels/cuda/_device.py" in names
    assert "tinyeffnet/imagenet_classes.txt" in names
    assert not any(n.startswith("kernels/") for n in names)
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True)
    path, spec = out.stdout.split("\n")[:2]
    assert path.startswith(str(target)) and spec == "None"
