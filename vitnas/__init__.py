"""vitnas: neural architecture search for Vision Transformers.

Train one weight-shared supernet, search it under hardware budgets, export the chosen
sub-networks as standalone ViTs. The core (this package's top level) never imports ray.
"""

from vitnas.arch import Arch, StageArch
from vitnas.cost import block_shapes, count_flops, count_params
from vitnas.errors import ArchError, BudgetError, ExportError, LatencyError, ProfileError, SpaceError, VitnasError
from vitnas.checkpoint import CheckpointError, load_supernet
from vitnas.evaluate import evaluate
from vitnas.export import extract, timm_state_dict, vit_config
from vitnas.latency import Budget, DeviceProfile, load_profile
from vitnas.pipeline import run
from vitnas.space import SearchSpace, load_space, shipped_spaces
from vitnas.supernet import SuperViT
from vitnas.train import train
from vitnas.vit import ViT, ViTConfig

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "ArchError",
    "Budget",
    "BudgetError",
    "CheckpointError",
    "DeviceProfile",
    "ExportError",
    "LatencyError",
    "ProfileError",
    "SearchSpace",
    "SpaceError",
    "StageArch",
    "SuperViT",
    "ViT",
    "ViTConfig",
    "VitnasError",
    "block_shapes",
    "count_flops",
    "count_params",
    "evaluate",
    "extract",
    "load_profile",
    "load_space",
    "load_supernet",
    "run",
    "shipped_spaces",
    "timm_state_dict",
    "train",
    "vit_config",
]
