"""The PyTorch side of ``python -m tinyeffnet.bench --vs-torch``: the same workloads with the reference
EfficientNet (PyPI ``efficientnet_pytorch``), for comparison only.

It is run as a script in its own process, by any Python that has torch and efficientnet_pytorch
(``--torch-python``), so it imports neither tinyeffnet nor anything but the standard library, torch and
the reference model; torch is never a dependency of tinyeffnet.

    python tools/bench_torch.py train|infer --model efficientnet-bN --batch B --steps S --warmup W --threads T \
        --resolution R --classes K

prints one JSON object, like ``tinyeffnet.bench``'s worker: ``images_per_second`` (batch / median step
time), ``step_seconds``, ``peak_rss_mib`` (the process's peak resident memory) and ``versions``.
The training step matches tinyeffnet's: forward, cross-entropy with label smoothing 0.1, backward,
SGD with Nesterov momentum 0.9 and weight decay 5e-4 (on every parameter: PyTorch's default).
"""

import argparse
import json
import resource
import statistics
import time

LABEL_SMOOTHING = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
LR = 0.05


def main():
    summary = " ".join(__doc__.split("\n\n")[0].split())      # the first paragraph (as tinyeffnet.cli.summary)
    p = argparse.ArgumentParser(prog="python tools/bench_torch.py", description=summary,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("kind", choices=("train", "infer"), help="a training step or an eval-mode forward")
    p.add_argument("--model", default="efficientnet-b0", help="an efficientnet_pytorch model name (b0 to b7)")
    for name, default, what in (("batch", 128, "images per step"), ("steps", 10, "timed steps"),
                                ("warmup", 2, "untimed steps before them"), ("threads", 2, "torch threads"),
                                ("resolution", 32, "image side in pixels"), ("classes", 10, "classifier outputs")):
        p.add_argument(f"--{name}", type=int, default=default, help=what)
    args = p.parse_args()

    import efficientnet_pytorch
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = efficientnet_pytorch.EfficientNet.from_name(args.model, num_classes=args.classes,
                                                        image_size=args.resolution)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    y = torch.randint(0, args.classes, (args.batch,))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                                weight_decay=WEIGHT_DECAY)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    def infer_step():
        model.eval()
        with torch.inference_mode():
            model(x)

    step = train_step if args.kind == "train" else infer_step
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps(dict(
        images_per_second=args.batch / statistics.median(times), step_seconds=times,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        versions=dict(torch=torch.__version__, efficientnet_pytorch=getattr(efficientnet_pytorch, "__version__", "?")),
        threads=torch.get_num_threads())))


if __name__ == "__main__":
    main()
