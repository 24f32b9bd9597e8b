"""``tools/train_torch.py`` (the README table's PyTorch column) runs only where torch is installed; here, in
tinyeffnet's own environment, it must say so clearly instead of raising from inside an import."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "train_torch.py"


def test_without_torch_it_says_what_to_do(tmp_path):
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed here; the message is for environments without it")
    except ImportError:
        pass
    result = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "1", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "is not installed in this Python" in result.stderr and "side environment" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []          # nothing written
