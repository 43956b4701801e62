"""Token reducers behind one interface (`TokenReducer`), chosen by name.

A space file names the reducer of each stage's reduction blocks
(``token_reduction.reducer``; a list makes it a per-stage choice that each `Arch`
records) and an exported model's `BlockConfig` names the one of each reducing block;
both resolve the name here.
"""

from __future__ import annotations

from vitnas.errors import ArchError
from vitnas.nn.reducers.base import KeptFraction, TokenReducer, Tokens, kept_token_count
from vitnas.nn.reducers.dynamic_vit import DynamicViT, keep_ratio_loss
from vitnas.nn.reducers.evit import EViT
from vitnas.nn.reducers.evo_vit import EvoViT
from vitnas.nn.reducers.stvit import STViT, STViTRecovery
from vitnas.nn.reducers.tome import ToMe

__all__ = [
    "TokenReducer", "Tokens", "KeptFraction", "kept_token_count", "keep_ratio_loss", "get_reducer", "reducer_names",
]

_IMPLEMENTATIONS: dict[str, TokenReducer] = {
    reducer.name: reducer for reducer in (EViT(), EvoViT(), ToMe(), DynamicViT(), STViT(), STViTRecovery())
}


def get_reducer(name: str) -> TokenReducer:
    """The reducer called `name`.

    Raises:
        ArchError: no reducer has that name.
    """
    try:
        return _IMPLEMENTATIONS[name]
    except KeyError:
        raise ArchError(f"reducer: {name!r} is not one of {', '.join(_IMPLEMENTATIONS)}") from None


def reducer_names() -> tuple[str, ...]:
    return tuple(_IMPLEMENTATIONS)
