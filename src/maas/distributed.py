"""Training on several processes: launch this stage under torchrun, and know which process writes.

`trainer.nproc > 1` makes the train stage run itself again under
`torch.distributed.run` (torchrun) with that many processes, from a composed
copy of its config, whoever called it (`dvc repro`, `maas stage train`, the
Prefect flow, a test). Each process trains on its shard; rank 0 alone writes
outputs, reports and resume state. Nothing here imports torch: the launch is
a subprocess.

    maas stage train trainer=ddp                     # 2 processes, gloo on CPU / nccl on CUDA
    maas stage train trainer=ddp trainer.nproc=4
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from maas.errors import ConfigError, TrainingFailed


def in_worker() -> bool:
    """True inside a process torchrun started (it sets LOCAL_RANK, RANK and WORLD_SIZE)."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def launch(cfg: DictConfig, stage: str, nproc: int) -> None:
    """Run `maas stage <stage>` on `cfg` under torchrun with `nproc` processes on this machine."""
    from maas.params_file import write_params

    if cfg.trainer.backend != "torch":
        raise ConfigError(f"trainer.nproc={nproc} launches torch DistributedDataParallel; the {cfg.trainer.backend} "
                          "backend uses a tf.distribute strategy over the GPUs it sees instead: set trainer.nproc=1")
    with tempfile.TemporaryDirectory(prefix="maas-ddp-") as tmp:
        params = Path(tmp) / "params.yaml"
        write_params(cfg, params)
        # --standalone: a rendezvous on a free local port, so concurrent launches don't collide.
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", "maas.cli", "stage", stage, "--params", str(params)]
        print(f"[maas] {stage}: launching {nproc} processes under torchrun", flush=True)
        # One thread per process on a small CPU box, unless the user chose otherwise.
        env = {"OMP_NUM_THREADS": "1", **os.environ}
        code = subprocess.run(argv, env=env).returncode
    if code != 0:
        raise TrainingFailed(f"distributed {stage} failed (torchrun exited with {code}); the error of the "
                             "failing process is printed above")
