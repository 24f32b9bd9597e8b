"""The benchmark command runs end to end and reports what it promises (timings are never asserted)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tinyeffnet import bench as bench_module

MODEL_KEYS = ("train_images_per_second", "infer_images_per_second", "peak_rss_mib")
POINT_KEYS = ("model", "kind", "resolution", "batch", "macs_per_image", "images_per_second", "gflops", "peak_fraction")
FAKE_TORCH_IMAGES_PER_SECOND = 10.0
FAKE_TORCH_WORKER = f"""
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("kind")
for name in ("model", "batch", "steps", "warmup", "threads", "resolution", "classes"):
    p.add_argument("--" + name)
args = p.parse_args()
assert args.model.startswith("efficientnet-b"), args.model
print(json.dumps(dict(images_per_second={FAKE_TORCH_IMAGES_PER_SECOND}, step_seconds=[0.1], peak_rss_mib=100.0,
                      versions=dict(torch="fake"), threads=int(args.threads), model=args.model,
                      resolution=int(args.resolution))))
"""


def bench(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tinyeffnet.bench", *args], capture_output=True, text=True, env=env)


@pytest.fixture
def fake_torch(tmp_path, monkeypatch):
    """A stand-in for PyTorch: importable ``torch`` and ``efficientnet_pytorch`` packages (empty) for the probe,
    and a torch worker that reports ``FAKE_TORCH_IMAGES_PER_SECOND`` without timing anything."""
    for package in ("torch", "efficientnet_pytorch"):
        (tmp_path / "site" / package).mkdir(parents=True)
        (tmp_path / "site" / package / "__init__.py").write_text("")
    worker = tmp_path / "tools" / "bench_torch.py"
    worker.parent.mkdir()
    worker.write_text(FAKE_TORCH_WORKER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(bench_module, "TORCH_WORKER", worker)


@pytest.mark.slow
def test_model_benchmark_json_has_every_figure_for_b0_and_v2_b0(fake_torch, capsys):
    bench_module.main(["--rounds", "1", "--steps", "1", "--vs-torch", "--torch-python", sys.executable, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert list(result["models"]) == list(bench_module.DEFAULT_MODELS) == ["b0", "v2-b0"]
    assert result["first_step_seconds_cold"] > 0 and result["first_step_seconds_warm"] > 0
    assert result["first_step_model"] == "b0" and result["stem_stride"] == 2 and result["resolution"] == 32
    for variant, figures in result["models"].items():
        for key in MODEL_KEYS:
            assert figures[key] > 0, (variant, key)
    b0 = result["models"]["b0"]
    assert b0["torch"]["train_images_per_second"] == FAKE_TORCH_IMAGES_PER_SECOND
    assert b0["ratios"]["train_throughput"] == pytest.approx(b0["train_images_per_second"] / FAKE_TORCH_IMAGES_PER_SECOND)
    assert "torch" not in result["models"]["v2-b0"]          # efficientnet_pytorch has no V2
    assert result["machine"]["cores"] >= 1


def test_kernel_table_rows():
    done = bench("--kernels", "--repeats", "1", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert {row["kernel"].split()[0] for row in rows} == {"stem", "depthwise", "pointwise", "fused"}
    assert all(row["forward_ms"] > 0 and row["backward_ms"] > 0 for row in rows)
    fused = [row for row in rows if row["kernel"].startswith("fused")]
    assert len(fused) == 5 and all(row["forward_gflops"] > 0 and row["backward_gflops"] > 0 for row in fused)


def test_dense_convolution_flops_by_hand():
    """V2-B0's first Fused-MBConv: 3×3, stride 1, 32 → 16 channels on (128, 16, 16, 32). Outputs
    M = 128·16·16·16 = 524,288, products per output K = 3·3·32 = 288: 150,994,944 multiply-adds, so
    2·M·K = 301,989,888 FLOPs forward and 4·M·K = 603,979,776 backward (dx and dw)."""
    case = bench_module.conv2d_case("fused", 16, 32, 16, 3, 1)
    assert (case.forward_flops, case.backward_flops) == (301_989_888, 603_979_776)
    strided = bench_module.conv2d_case("fused", 16, 16, 64, 3, 2)   # 8×8 out: M = 128·8·8·64, K = 3·3·16
    assert strided.forward_flops == 2 * 524_288 * 144
    assert bench_module.gflops(301_989_888, 10.0) == pytest.approx(30.1989888)     # FLOPs / (10 ms · 1e6)


def test_effective_gflops_by_hand():
    """1 M multiply-adds per image at 500 images/s: inference 2·1e6·500 = 1.0 GFLOP/s; a training step
    counts 3 forward passes, 3.0 GFLOP/s."""
    assert bench_module.effective_gflops(1_000_000, 500.0, "infer") == pytest.approx(1.0)
    assert bench_module.effective_gflops(1_000_000, 500.0, "train") == pytest.approx(3.0)


def test_the_multiply_adds_are_the_summary_commands():
    """B0 with 10 classes at 32×32, as ``python -m tinyeffnet.summary --phi 0`` prints (README): 8,474,848."""
    assert bench_module.macs_per_image("b0", 32) == 8_474_848


def test_the_sweep_grid_trains_from_two_images():
    grid = bench_module.sweep_grid(("b0",), (32, 64), (1, 8))
    assert grid == [("b0", "train", 32, 8), ("b0", "train", 64, 8), ("b0", "infer", 32, 1), ("b0", "infer", 32, 8),
                    ("b0", "infer", 64, 1), ("b0", "infer", 64, 8)]


def test_sweep_json_plot_and_ratios(fake_torch, tmp_path, capsys):
    plot = tmp_path / "sweep.png"
    bench_module.main(["--sweep", "--models", "b0,v2-b0", "--resolutions", "32", "--batches", "2", "--steps", "1",
                       "--vs-torch", "--torch-python", sys.executable, "--plot", str(plot), "--json"])
    result = json.loads(capsys.readouterr().out)["sweep"]
    assert result["peak_gflops"] > 0 and result["training_passes"] == 3 and "matrix product" in result["peak"]
    points = result["points"]
    assert [(p["model"], p["kind"]) for p in points] == [("b0", "train"), ("b0", "infer"), ("v2-b0", "train"),
                                                          ("v2-b0", "infer")]
    for p in points:
        for key in POINT_KEYS:
            assert p[key] is not None, (p["model"], p["kind"], key)
        assert p["gflops"] == pytest.approx(bench_module.effective_gflops(p["macs_per_image"], p["images_per_second"],
                                                                          p["kind"]))
        assert p["peak_fraction"] == pytest.approx(p["gflops"] / result["peak_gflops"])
    for p in points[:2]:
        assert p["torch_images_per_second"] == FAKE_TORCH_IMAGES_PER_SECOND
        assert p["ratio"] == pytest.approx(p["images_per_second"] / FAKE_TORCH_IMAGES_PER_SECOND)
    assert all("torch_images_per_second" not in p and "ratio" not in p for p in points[2:])
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_sweep_table_as_text():
    done = bench("--sweep", "--models", "b0", "--resolutions", "32", "--batches", "1", "--steps", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a training step counted as 3 forward passes" in done.stdout and "% peak" in done.stdout
    assert any(line.split()[:4] == ["b0", "infer", "32", "1"] for line in done.stdout.splitlines())


@pytest.mark.parametrize("argv, message", [
    (["--plot", "x.png"], "--resolutions, --batches and --plot are the size sweep's: add --sweep"),
    (["--sweep", "--models", "b0,b9"], "argument --models: must be comma-separated variants"),
    (["--sweep", "--batches", "32,"], "argument --batches: must be comma-separated whole numbers ≥ 1"),
    (["--sweep", "--resolutions", "16"], "b0 needs images of at least 32×32 (its output stride), got 16"),
    (["--sweep", "--kernels"], "--sweep, --kernels, --ranks and --concurrent are separate benchmarks"),
    (["--concurrent", "2", "--kernels"], "--sweep, --kernels, --ranks and --concurrent are separate benchmarks"),
    (["--kernels", "--models", "b2"], "--kernels, --ranks and --concurrent measure fixed B0 (and V2-B0) shapes"),
    (["--concurrent", "1"], "argument --concurrent: must be at least 2"),
])
def test_bad_sweep_options_are_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_module.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


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
    assert bench_module.TORCH_WORKER.is_file() and bench_module.TORCH_WORKER.parent.name == "tools"


def test_vs_torch_without_the_torch_worker_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """A non-editable install has no tools/: --vs-torch says so instead of failing inside a worker."""
    monkeypatch.setattr(bench_module, "TORCH_WORKER", tmp_path / "tools" / "bench_torch.py")
    with pytest.raises(SystemExit) as exit_info:
        bench_module.main(["--vs-torch", "--rounds", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--vs-torch runs {tmp_path / 'tools' / 'bench_torch.py'}, which is not there" in err
    assert "run the benchmark from a clone" in err


def test_a_failed_sweep_point_is_recorded_and_the_table_says_so():
    errors = []
    fail = [sys.executable, "-c", "import sys; sys.exit('MemoryError: out of memory')"]
    assert bench_module.sweep_worker(fail, None, errors) is None and errors == ["MemoryError: out of memory"]
    result = dict(stem_stride=2, num_classes=10, threads=2, rounds=1, steps_per_round=3, training_passes=3,
                  peak_gflops=100.0, peak="measured", points=[
                      dict(model="b0", kind="infer", resolution=32, batch=1, images_per_second=200.0, gflops=3.4,
                           peak_fraction=0.034),
                      dict(model="b2", kind="train", resolution=224, batch=256, errors=errors)])
    lines = bench_module.format_sweep(result).splitlines()
    assert lines[-3].split() == ["b0", "infer", "32", "1", "200.0", "3.40", "3.40"]
    assert lines[-2].split() == ["b2", "train", "224", "256", "-", "-", "-"]
    assert lines[-1] == "failed: b2 train at 224, batch 256: MemoryError: out of memory"


def test_concurrent_trainings_each_against_one_alone(monkeypatch, capsys):
    """Each round starts the two workers in one call (together), and each one's fraction is its images/s over the
    median alone; the text says both."""
    starts = []

    def worker(command, env):
        return {"images_per_second": 100.0}, 1.0

    def together(commands, env):
        starts.append(len(commands))
        return [{"images_per_second": 40.0 + i} for i in range(len(commands))]

    monkeypatch.setattr(bench_module, "run_worker", worker)
    monkeypatch.setattr(bench_module, "run_together", together)
    result = bench_module.run_concurrent_benchmark(2, rounds=3, steps=1, report=lambda message: None)
    assert starts == [2, 2, 2]
    assert result["together_images_per_second"] == [40.0, 41.0] and result["fractions"] == [0.40, 0.41]
    text = bench_module.format_concurrent(result)
    assert "one training alone, images/s" in text and "40 (40 %), 41 (41 %)" in text


def test_run_together_starts_every_worker_before_waiting(tmp_path):
    """Each worker waits for a file the last one writes: run one after the other, the first would wait forever."""
    flag = tmp_path / "all started"
    code = ("import json, os, sys, time\n"
            "if sys.argv[1] == 'last': open(sys.argv[2], 'w').close()\n"
            "deadline = time.time() + 30\n"
            "while not os.path.exists(sys.argv[2]) and time.time() < deadline: time.sleep(0.01)\n"
            "print(json.dumps({'images_per_second': float(os.path.exists(sys.argv[2]))}))")
    commands = [[sys.executable, "-c", code, "first", str(flag)], [sys.executable, "-c", code, "last", str(flag)]]
    results = bench_module.run_together(commands, os.environ)
    assert [r["images_per_second"] for r in results] == [1.0, 1.0]
