"""Data-parallel training over MPI: ``mpiexec -n N python -m tinyeffnet.train …`` (the ``mpi`` extra).

Synchronous data parallelism, as Horovod does it: N processes (ranks) hold the same model. Each step every rank
draws the same global batch of B = ``--batch-size`` images (from (seed, epoch, step), exactly as one process
draws it), keeps its own rows of it (``shard``), and computes the mean gradient g_r over its n_r rows. One
``Allreduce`` over one flat float32 buffer then sums n_r·g_r, and every rank divides by B = Σ_r n_r:

    g = (1/B) · Σ_r n_r · g_r        the global batch's mean gradient, on every rank

so every rank takes the same SGD step (the learning-rate schedule is one process's) and the models stay
identical without being sent again. What else the ranks share:

    start        rank 0's parameters and buffers are broadcast once (``broadcast``)
    batch norm   per-rank batch statistics (Horovod's default); the running statistics travel in the same flat
                 buffer, averaged with the weights n_r/B, so they are identical on every rank too. Or the
                 global batch's statistics (``SyncBatchNorm``, ``use_sync_batchnorm``)
    loss         the global batch's mean loss and correct count (a 3-number Allreduce before the backward), so
                 a loss that is not finite on any rank stops every rank at the same step
    signals      Ctrl-C or SIGTERM to ``mpiexec`` (which forwards them to the ranks): after every step the ranks
                 agree (a MAX reduction of the signal number, SIGTERM over SIGINT), stop after the same step,
                 and rank 0 writes the checkpoint; exit status 130 or 143. Before training (while the
                 features are extracted, say) the ranks cannot agree, so the job ends with ``Abort`` and the
                 same status (``abandon``)
    evaluation   each rank scores its rows of the test set; loss sums and correct counts are added up. A short
                 run's recalibration of batch norm, too, runs on each rank's rows of the batches, and the
                 statistics are then averaged like the running ones (``average_statistics``)
    dropout      each rank draws its masks from its own stream, re-seeded before every step from (seed, epoch,
                 step, rank) (``seed_noise``): different units dropped on every rank, and nothing per rank to keep
                 in a checkpoint, so a resumed run draws what an uninterrupted one with as many ranks would
    features     with --freeze-body each rank extracts the frozen body's features of its rows, and every rank
                 gets all of them (``gather``, an ``Allgatherv``)
    failures     an exception or an error status on any rank aborts the whole job at once (``run_job``)
    threads      one Numba thread per rank, unless NUMBA_NUM_THREADS is set

Rank r of N keeps rows [r·B//N, (r+1)·B//N) of a batch of B rows (``share``): contiguous, sizes differing by at
most one.
Rank 0 alone prints and writes (``World.is_main``). Without mpi4py, or outside ``mpiexec``, ``make_world``
returns the engine's one-process ``World`` and nothing here runs: training is exactly that of one process.
"""

import os
import statistics
import sys
import time
import traceback

import numba
import numpy as np

from tinyeffnet.cli import run_cli
from tinyeffnet.engine import EXIT_SIGNAL, World
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.kernels.activations import relu6_backward, swish_backward
from tinyeffnet.kernels.batchnorm import update_running_stats
from tinyeffnet.kernels.batchnorm_act import batchnorm_act_eval_forward
from tinyeffnet.layers import BatchNorm

# What launchers set in every process they start: MPICH's Hydra, Open MPI, and PMIx-based ones (Slurm's srun)
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
NO_SIGNAL = 0
ABANDON_GRACE_SECONDS = 5      # how long the other ranks leave rank 0 to end the job itself (``abandon``)
OUTPUT_GRACE_SECONDS = 1       # a failing rank's wait before Abort, for the launcher to pass on what it printed


def launcher_size():
    """How many processes the launcher started (1 outside mpiexec), from its environment variables."""
    return max((int(os.environ[name]) for name in LAUNCHER_SIZE_VARIABLES if name in os.environ), default=1)


def mpi_module():
    """mpi4py's ``MPI`` under a launcher that started more than one process, else None. Importing it joins
    the job (``MPI_Init``), which is why a plain ``python -m tinyeffnet.train`` never does."""
    if launcher_size() == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI


def make_world():
    """The processes of this run: an ``MPIWorld`` under ``mpiexec -n N`` (N > 1), else one process."""
    MPI = mpi_module()
    if MPI is None and launcher_size() > 1:
        raise TinyEffNetError(f"started as one of {launcher_size()} MPI processes, but mpi4py is not installed: "
                              "pip install -e \".[mpi]\" (or run without mpiexec)")
    if MPI is None or MPI.COMM_WORLD.Get_size() == 1:
        return World()
    return MPIWorld(MPI)


class MPIWorld(World):
    """Rank ``rank`` of the ``size`` processes of ``MPI.COMM_WORLD``, training one model together."""

    def __init__(self, MPI):
        comm = MPI.COMM_WORLD
        super().__init__(comm.Get_rank(), comm.Get_size())
        self.MPI, self.comm = MPI, comm
        self.flats = {}                # size → a flat float32 buffer (the gradients' of every step), made once
        if "NUMBA_NUM_THREADS" not in os.environ:
            numba.set_num_threads(1)

    def share(self, begin, end):
        """This rank's part [b, e) of the rows [begin, end): b = begin + r·n//N, e = begin + (r + 1)·n//N for
        n = end − begin rows (empty when n < N, for some ranks)."""
        n = end - begin
        return begin + self.rank * n // self.size, begin + (self.rank + 1) * n // self.size

    def shard(self, rows):
        """This rank's rows of ``rows`` (B, …): rows [r·B//N, (r+1)·B//N)."""
        begin, end = self.share(0, len(rows))
        if begin == end:
            raise TinyEffNetError(f"{len(rows)} rows cannot be shared by {self.size} processes: use a "
                                  f"--batch-size (and test set) of at least {self.size}, or fewer processes")
        return rows[begin:end]

    def gather(self, values, begin, end):
        """``values[begin:end]`` (rows of a C-contiguous array) ← every rank's ``share(begin, end)`` of them, as
        that rank filled them in: one ``Allgatherv``, in place."""
        block = values[begin:end]
        per_row = block[:1].size
        bounds = [begin + r * (end - begin) // self.size for r in range(self.size + 1)]
        counts = [per_row * (b - a) for a, b in zip(bounds, bounds[1:])]
        displacements = [per_row * (a - begin) for a in bounds[:-1]]
        self.comm.Allgatherv(self.MPI.IN_PLACE, [block, (counts, displacements)])

    def broadcast(self, model):
        """Give every rank rank 0's parameters and buffers (in place, ``Bcast``)."""
        for name, array in {**model.named_parameters(), **model.named_buffers()}.items():
            if not isinstance(array, np.ndarray):
                raise TinyEffNetError("training over MPI runs on the CPU: leave out --device cuda")
            self.comm.Bcast(array, root=0)

    def sum(self, totals):
        """``totals`` (a float64 array) ← its sum over the ranks, in place."""
        self.comm.Allreduce(self.MPI.IN_PLACE, totals, op=self.MPI.SUM)
        return totals

    def batch_mean(self, loss, correct, count):
        """(mean loss, correct count) over the global batch, from this rank's mean ``loss`` and ``correct``
        over its ``count`` rows."""
        totals = self.sum(np.array([loss * count, correct, count], np.float64))
        return totals[0] / totals[2], int(totals[1])

    def reduce_gradients(self, grads, count, statistics):
        """g ← (1/B)·Σ_r n_r·g_r for every gradient in ``grads`` (this rank's mean over its n_r = ``count``
        rows), and the same weighted average of the float32 ``statistics`` (batch norm's running mean and
        variance), in place, through one flat buffer and one ``Allreduce``; its last element carries n_r, so
        the sum there is B."""
        arrays = [*grads.values(), *(a for a in statistics.values() if a.dtype == np.float32)]
        size = sum(a.size for a in arrays) + 1
        if size not in self.flats:
            self.flats[size] = np.empty(size, np.float32)
        flat = self.flats[size]
        views, offset = [], 0
        for a in arrays:
            views.append(flat[offset:offset + a.size].reshape(a.shape))
            np.multiply(a, np.float32(count), out=views[-1])
            offset += a.size
        flat[-1] = count
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        for a, view in zip(arrays, views):
            np.divide(view, flat[-1], out=a)

    def average_statistics(self, statistics, count):
        self.reduce_gradients({}, count, statistics)

    def agree_stop(self, signum):
        """The signal every rank stops for after this step (the largest any rank received), or None."""
        agreed = np.array([signum or NO_SIGNAL], np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, agreed, op=self.MPI.MAX)
        return int(agreed[0]) or None

    def seed_noise(self, noise_rng, seed, epoch, index):
        """``noise_rng`` ← rank r's stream for step ``index`` of ``epoch``: child r of the seed sequence
        (seed, epoch, index) (NumPy's ``spawn_key``, independent of the augmentation's stream from the same
        three numbers). A function of (seed, epoch, step, rank) alone, it needs no saving."""
        child = np.random.SeedSequence([seed, epoch, index], spawn_key=(self.rank,))
        noise_rng.bit_generator.state = np.random.PCG64(child).state

    def command(self, module):
        return f"mpiexec -n {self.size} python -m {module}"

    def abandon(self, status):
        """End the whole job with ``Abort(status)``: another rank may be waiting for this one in a collective
        (the features' ``gather``, the first ``broadcast``) that it would never leave. Rank 0 does it at once,
        having printed and saved what it had; the others give it ``ABANDON_GRACE_SECONDS`` to, in case rank 0
        is the one waiting."""
        if not self.is_main:
            time.sleep(ABANDON_GRACE_SECONDS)
        self.comm.Abort(status)

    def allreduce_seconds(self, repeats):
        """The median time of one ``Allreduce`` of the gradients' flat buffer (as large as the steps made it)
        over ``repeats`` calls, every rank starting together (a ``Barrier`` before each): what averaging the
        gradients costs a step, apart from its other work. Every rank must call it."""
        buffer = np.zeros(max(self.flats), np.float32)
        times = []
        for _ in range(repeats):
            self.comm.Barrier()
            start = time.perf_counter()
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def run_job(main, argv=None):
    """``run_cli(main, argv)``; under ``mpiexec``, a rank that raises or ends with an error status ends the
    whole job with ``Abort`` (the other ranks would wait for it in their next reduction forever)."""
    MPI = mpi_module()
    if MPI is None:
        return run_cli(main, argv)
    try:
        status = run_cli(main, argv)
    except SystemExit as e:            # argparse's --help (0) and its errors (2)
        status = e.code
    except BaseException:              # KeyboardInterrupt too: this rank is leaving
        traceback.print_exc()
        status = 1
    if status not in (None, 0, *EXIT_SIGNAL.values()):
        print(f"rank {MPI.COMM_WORLD.Get_rank()} failed (exit status {status}): aborting all "
              f"{MPI.COMM_WORLD.Get_size()} processes", file=sys.stderr, flush=True)
        # The launcher forwards each rank's output through a pipe; Abort ends the job at once, and what is
        # still in the pipe can be lost (a CI run on a busy machine showed the job's end without this rank's
        # traceback): a second for it to pass the error on.
        time.sleep(OUTPUT_GRACE_SECONDS)
        MPI.COMM_WORLD.Abort(status)
    return status


# --- synchronised batch norm ---------------------------------------------------------------------------------
ACTIVATION_BACKWARD = {None: lambda u, dz: dz, "swish": swish_backward, "relu6": relu6_backward}


class SyncBatchNorm(BatchNorm):
    """Batch norm whose training statistics are those of the global batch, over every rank of ``world``.

    Forward, per channel over the M values of all ranks (M_r = n_r·H·W here): μ = (1/M)·Σ x, then
    σ² = (1/M)·Σ (x − μ)² (two sums over ranks: two-pass, as accurate as one process), then the layer's
    z = act(u), u = γ·x̂ + β, x̂ = (x − μ)/sqrt(σ² + ε); the running statistics are updated with count M.

    Backward. For the gradient G = ∂L/∂u of the global batch's mean loss L, as one process over the whole
    batch: ∂L/∂x = γ/σ·(G − (1/M)·Σ G − x̂·(1/M)·Σ G·x̂), sums over all ranks. A rank's upstream gradient is
    that of its own mean loss, d = (B/n_r)·G, so the ranks add up n_r·Σd and n_r·Σd·x̂ (and n_r, giving B), and
    return dx in the rank's units, (B/n_r)·∂L/∂x = γ/σ·(d − (Σ n_r·Σd + x̂·Σ n_r·Σd·x̂)/(n_r·M)). dγ = Σ d·x̂ and
    dβ = Σ d stay local: ``MPIWorld.reduce_gradients`` weights them by n_r/B like every gradient.
    With one rank these are ``BatchNorm``'s formulas. CPU only; evaluation is ``BatchNorm``'s."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        p, b = self.params, self.buffers
        x2 = x.reshape(-1, x.shape[-1])
        first = self.world.sum(np.append(x2.sum(axis=0, dtype=np.float64), len(x2)))
        self.count, mean = int(first[-1]), first[:-1] / first[-1]
        var = self.world.sum(np.square(x2 - mean).sum(axis=0)) / self.count
        self.x, self.mean, self.var = x, mean.astype(x.dtype), var.astype(x.dtype)
        b["running_mean"], b["running_var"] = update_running_stats(
            b["running_mean"], b["running_var"], self.mean, self.var, self.count,
            self.momentum if self.momentum_override is None else self.momentum_override)
        b["num_batches_tracked"] += 1
        return batchnorm_act_eval_forward(x, p["gamma"], p["beta"], self.mean, self.var, self.epsilon,
                                          self.activation)

    def backward(self, dz):
        p = self.params
        x, mean, var = self.release("x", "mean", "var")
        x2, rows = x.reshape(-1, x.shape[-1]), len(x)
        inv_std = 1.0 / np.sqrt(var.astype(np.float64) + self.epsilon)
        x_hat = (x2 - mean) * inv_std
        d = ACTIVATION_BACKWARD[self.activation](x_hat * p["gamma"] + p["beta"], dz.reshape(x2.shape).astype(np.float64))
        sums = np.concatenate([d.sum(axis=0), (d * x_hat).sum(axis=0)])      # Σd, Σd·x̂ per channel
        total = self.world.sum(np.append(rows * sums, rows))[:-1]
        channels = len(var)
        dx = p["gamma"] * inv_std * (d - (total[:channels] + x_hat * total[channels:]) / (rows * self.count))
        self.accumulate("gamma", sums[channels:].astype(x.dtype))
        self.accumulate("beta", sums[:channels].astype(x.dtype))
        return dx.astype(x.dtype).reshape(x.shape)


def use_sync_batchnorm(model, world):
    """Make every ``BatchNorm`` of ``model`` a ``SyncBatchNorm`` over ``world`` (an ``MPIWorld``): each keeps its
    arrays (the ones the optimizer holds) and changes only its class, hence its forward and backward."""
    for _, layer in model.named_layers():
        if isinstance(layer, BatchNorm):
            layer.__class__, layer.world = SyncBatchNorm, world
    return model
