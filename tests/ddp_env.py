"""What the two-process gloo DDP tests share: a free port, the environment torchrun would set, and one spawn.

Starting two interpreters that import torch, timm and nni costs far more than the training
they do, so one spawn (`spawn_ddp_ranks`, run once per session by conftest's ``ddp_ranks``)
trains both a supernet (tests/test_train.py checks it) and a standalone model
(tests/test_finetune.py checks it) in the same process group, each writing to its own folder.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch

# The supernet half: test_train's TINY recipe (which checks this is so) with three sub-networks a step, batch 12.
SUPERNET_RECIPE = {
    "space": "tiny32",
    "data": {"name": "synthetic", "synthetic_size": 48},
    "epochs": 2,
    "batch_size": 12,
    "optimizer": {"lr": 1e-3, "lr_per_512": None},
    "schedule": {"warmup_epochs": 1},
    "sampler": {"name": "multi", "subnets": 3},
    "drop_path": 0.1,
    "log_every": 1,
}
# The standalone half: tiny32's smallest sub-network, the digits recipe on 48 synthetic images, one epoch, batch 12.
STANDALONE_OVERRIDES = ["data={name: synthetic, synthetic_size: 48}", "batch_size=12", "epochs=1", "log_every=1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_torchrun_rank(rank: int, world: int, port: int) -> None:
    """Sets the variables torchrun sets for `rank`, and one torch thread (two ranks share two cores)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def spawn_ddp_ranks(out: Path) -> None:
    """Two gloo ranks, as torchrun starts them, train in `out/supernet` and then in `out/standalone`."""
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(2, free_port(), str(out)), nprocs=2, join=True)


def _rank(rank: int, world: int, port: int, out: str) -> None:
    as_torchrun_rank(rank, world, port)
    import torch.distributed as dist

    _supernet_replica(rank, Path(out) / "supernet")
    dist.barrier()
    _standalone_replica(rank, Path(out) / "standalone")  # joins the process group the supernet half started
    dist.barrier()
    dist.destroy_process_group()


def _supernet_replica(rank: int, out: Path) -> None:
    """One epoch of the supernet; each rank saves its weights and its sharded validation report."""
    from vitnas.train.loop import train_epoch
    from vitnas.train.metrics import validate
    from vitnas.train.recipe import load_recipe
    from vitnas.train.supernet import build_supernet_context

    out.mkdir(parents=True, exist_ok=True)
    context = build_supernet_context(load_recipe(SUPERNET_RECIPE))
    train_epoch(context, 0, 0, out)
    torch.save(context.model.state_dict(), out / f"rank{rank}.pt")
    metrics = validate(context, 0, 1)
    (out / f"rank{rank}.json").write_text(json.dumps(metrics))


def _standalone_replica(rank: int, out: Path) -> None:
    """train_standalone of the same seeded model on both ranks; rank 0 checkpoints in `out/run`."""
    import vitnas
    from vitnas.train.recipe import load_recipe
    from vitnas.train.standalone import train_standalone

    out.mkdir(parents=True, exist_ok=True)
    space = vitnas.load_space("tiny32")
    torch.manual_seed(0)  # the same initial weights on both ranks
    model = vitnas.ViT(vitnas.vit_config(space, space.smallest()))
    metrics = train_standalone(model, load_recipe("tiny32_digits", STANDALONE_OVERRIDES), out / "run")
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(metrics))
