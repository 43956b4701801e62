"""What the two-process gloo DDP tests share: a free port and the environment torchrun would set."""

from __future__ import annotations

import os
import socket

import torch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_torchrun_rank(rank: int, world: int, port: int) -> None:
    """Sets the variables torchrun sets for `rank`, and one torch thread (two ranks share two cores)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
