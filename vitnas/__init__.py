"""vitnas: neural architecture search for Vision Transformers.

Train one weight-shared supernet, search it under hardware budgets, export the chosen
sub-networks as standalone ViTs. The core (this package's top level) never imports ray.
"""

from vitnas.arch import Arch, StageArch
from vitnas.cost import block_shapes, count_flops, count_params
from vitnas.errors import ArchError, ExportError, SpaceError, VitnasError
from vitnas.export import extract, timm_state_dict, vit_config
from vitnas.pipeline import run
from vitnas.space import SearchSpace, load_space, shipped_spaces
from vitnas.supernet import SuperViT
from vitnas.vit import ViT, ViTConfig

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "StageArch",
    "ArchError",
    "ExportError",
    "SpaceError",
    "VitnasError",
    "SearchSpace",
    "SuperViT",
    "ViT",
    "ViTConfig",
    "block_shapes",
    "count_flops",
    "count_params",
    "extract",
    "load_space",
    "run",
    "shipped_spaces",
    "timm_state_dict",
    "vit_config",
]
