"""torch.distributed set-up from torchrun's or SLURM's variables, sharding and reductions.

One process per device. `torchrun` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; under `srun` we read SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID instead (MASTER_ADDR
and MASTER_PORT must then be exported by the job script). Without either, training runs as a
single plain process and none of this touches torch.distributed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank among world_size, local_rank on its node, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(*names: str) -> int | None:
    for name in names:
        if os.environ.get(name, "").strip():
            return int(os.environ[name])
    return None


def init_distributed(device: str = "auto", backend: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun/SLURM and pick this process's device.

    device: "auto" (cuda if available), "cpu" or "cuda". backend "auto" is nccl on GPUs and gloo
    on CPU (nccl cannot run on CPU tensors).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("run.device=cuda but no CUDA device is available; use run.device=cpu")
    world_size = _env_int("WORLD_SIZE", "SLURM_NTASKS") or 1
    rank = _env_int("RANK", "SLURM_PROCID") or 0
    local_rank = _env_int("LOCAL_RANK", "SLURM_LOCALID") or 0
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if device == "cuda" else "gloo"
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, torch_device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def reduce_sums(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Sum each value over all ranks (float64, so counts stay exact)."""
    if not info.enabled or not values:
        return dict(values)
    keys = sorted(values)
    # gloo reduces CPU tensors only; nccl needs them on the GPU.
    device = info.device if info.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def gather_objects(obj: object, info: DistInfo) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (small picklable objects only)."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class ShardedSampler(Sampler[int]):
    """Indices of this rank's shard, reshuffled per epoch from (seed, epoch).

    Training (`pad=True`): every rank gets ceil(n / world) indices, padding by wrapping around so
    all ranks run the same number of steps (DDP needs that). Evaluation (`pad=False`): rank r
    gets indices r, r + world, ... and nothing twice, so the union over ranks is each sample
    exactly once (ranks may then differ by one sample).
    """

    def __init__(
        self, length: int, info: DistInfo, shuffle: bool, seed: int = 0, pad: bool = True
    ) -> None:
        self.length, self.info, self.shuffle, self.seed, self.pad = length, info, shuffle, seed, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.length))
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(self.length, generator=g).tolist()

    def __iter__(self):
        order = self._order()
        if self.pad and self.length:
            total = math.ceil(self.length / self.info.world_size) * self.info.world_size
            order = (order * math.ceil(total / self.length))[:total]
        return iter(order[self.info.rank :: self.info.world_size])

    def __len__(self) -> int:
        world, rank = self.info.world_size, self.info.rank
        if self.pad:
            return math.ceil(self.length / world)
        return len(range(rank, self.length, world))
