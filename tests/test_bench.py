"""The benchmark command runs end to end and reports what it promises (timings are never asserted)."""

import importlib.util
import json
import subprocess
import sys

import pytest

MODEL_KEYS = ("train_images_per_second", "infer_images_per_second", "peak_rss_mib", "first_step_seconds_cold",
              "first_step_seconds_warm")


def bench(*args):
    return subprocess.run([sys.executable, "-m", "tinyeffnet.bench", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_model_benchmark_json_has_every_figure():
    done = bench("--rounds", "1", "--steps", "1", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for key in MODEL_KEYS:
        assert result[key] > 0, key
    assert result["machine"]["cores"] >= 1 and "torch" not in result


def test_kernel_table_rows():
    done = bench("--kernels", "--repeats", "1", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert {row["kernel"].split()[0] for row in rows} == {"stem", "depthwise", "pointwise"}
    assert all(row["forward_ms"] > 0 and row["backward_ms"] > 0 for row in rows)


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_vs_torch_without_torch_is_a_clear_error():
    done = bench("--vs-torch", "--torch-python", sys.executable, "--rounds", "1")
    assert done.returncode == 2
    assert "--vs-torch needs torch and efficientnet_pytorch" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("flag", ["--rounds", "--steps", "--threads", "--repeats"])
def test_counts_below_one_are_refused(flag):
    done = bench(flag, "0")
    assert done.returncode == 2 and f"argument {flag}: must be at least 1" in done.stderr


def test_the_torch_worker_is_found_in_the_repository():
    from tinyeffnet import bench as bench_module
    assert bench_module.TORCH_WORKER.is_file() and bench_module.TORCH_WORKER.parent.name == "tools"


def test_vs_torch_without_the_torch_worker_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """A non-editable install has no tools/: --vs-torch says so instead of failing inside a worker."""
    from tinyeffnet import bench as bench_module
    monkeypatch.setattr(bench_module, "TORCH_WORKER", tmp_path / "tools" / "bench_torch.py")
    with pytest.raises(SystemExit) as exit_info:
        bench_module.main(["--vs-torch", "--rounds", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--vs-torch runs {tmp_path / 'tools' / 'bench_torch.py'}, which is not there" in err
    assert "run the benchmark from a clone" in err
