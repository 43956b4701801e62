"""Predicting an arch's latency from its work terms, fast enough that search never waits.

The model is linear in the terms of `vitnas.latency.features` with non-negative
coefficients (each term can only cost time), fitted by non-negative least squares on
*relative* residuals, ``(predicted - measured) / measured``: a budget is a relative
promise, and plain least squares would trade the small archs' accuracy for the
large ones'. Columns are scaled to [0, 1] before solving so that MAC counts in the
billions and per-block constants are weighed alike, and a tiny ridge keeps the
solution unique when there are fewer archs than terms.

Prediction never builds feature matrices: it walks the arch's blocks and looks up
each distinct block shape's cached contribution in milliseconds (a few hundred
entries cover a whole space), which predicts tens of thousands of archs per second.
`features.feature_row` is the reference that this fast path equals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy.optimize import nnls
from scipy.stats import kendalltau

from vitnas.errors import LatencyError
from vitnas.space.arch import Arch, StageArch
from vitnas.space.blocks import block_reducer, block_shape
from vitnas.latency.features import (
    ARCH_FEATURES,
    BLOCK_FEATURES,
    FEATURES,
    REDUCER_FEATURES,
    arch_row,
    block_row,
    feature_matrix,
    feature_row,
)
from vitnas.space.reducer_rules import REDUCERS
from vitnas.space.space import SearchSpace
from vitnas.space.spec import stage_grid
from vitnas.util.fields import is_number

__all__ = ["LatencyPredictor", "PredictionError", "prediction_error"]

_HEAD = ARCH_FEATURES.index("head_memory")
_ATTENTION_MACS = BLOCK_FEATURES.index("attention_macs")


class LatencyPredictor:
    """Milliseconds of any arch of one space, at the device, batch and dtype it was fitted on.

    Attributes:
        space: the space whose archs it predicts.
        coefficients: milliseconds per unit of each term of `FEATURES` (read-only).
    """

    kind = "linear-nnls"

    def __init__(self, space: SearchSpace, coefficients: Sequence[float]) -> None:
        weights = np.array(coefficients, dtype=np.float64)
        if weights.shape != (len(FEATURES),) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise LatencyError(f"coefficients: expected {len(FEATURES)} finite non-negative numbers")
        weights.setflags(write=False)
        self.space = space
        self.coefficients = weights
        self._arch_weights = weights[: len(ARCH_FEATURES)]
        self._block_weights = weights[len(ARCH_FEATURES) :]
        self._bases: dict[tuple[int, int, tuple[int, ...]], float] = {}  # arch terms but the head's token part
        # (stage, tokens, dim, heads, mlp ratio, keep rate, reducer) -> (ms, tokens after)
        self._blocks: dict[tuple[int, int, int, int, float, float, str | None], tuple[float, int]] = {}
        self._tokens: dict[tuple[int, int], int] = {}  # (patch grid, stage) -> tokens entering the stage

    @classmethod
    def fit(cls, space: SearchSpace, archs: Sequence[Arch], latencies_ms: Sequence[float],
            ridge: float = 1e-6) -> LatencyPredictor:
        """Fits the coefficients to measured latencies (see the module docstring).

        Raises:
            LatencyError: fewer than two archs, lengths differ, or a latency is not positive.
        """
        measured = np.asarray(latencies_ms, dtype=np.float64)
        if len(archs) != len(measured) or len(measured) < 2:
            raise LatencyError(f"fit: need as many latencies as archs, at least 2 (got {len(archs)}, {len(measured)})")
        if not np.all(np.isfinite(measured) & (measured > 0)):
            raise LatencyError("fit: every measured latency must be a positive number of milliseconds")
        features = feature_matrix(space, archs)
        scale = np.abs(features).max(axis=0)
        scale[scale == 0] = 1.0
        system = features / scale / measured[:, None]  # relative residuals: (X c - y) / y
        target = np.ones(len(measured))
        if ridge > 0:
            system = np.vstack([system, math.sqrt(ridge) * np.eye(len(FEATURES))])
            target = np.concatenate([target, np.zeros(len(FEATURES))])
        solution, _ = nnls(system, target, maxiter=100 * len(FEATURES))
        return cls(space, solution / scale)

    def predict(self, arch: Arch) -> float:
        """Predicted milliseconds of one forward pass of `arch`.

        Raises:
            ArchError: `arch` is not in the predictor's space.
        """
        self.space.validate(arch)
        return self._predict_valid(arch)

    def predict_many(self, archs: Iterable[Arch]) -> np.ndarray:
        """`predict` of each arch, as an array."""
        return np.array([self.predict(arch) for arch in archs], dtype=np.float64)

    def contributions(self, arch: Arch) -> dict[str, float]:
        """Milliseconds each term contributes to `predict(arch)`: where the time goes."""
        return dict(zip(FEATURES, (feature_row(self.space, arch) * self.coefficients).tolist()))

    def __repr__(self) -> str:
        used = [name for name, weight in zip(FEATURES, self.coefficients) if weight > 0]
        return f"LatencyPredictor({self.space.name!r}, {self.kind}, terms used: {', '.join(used) or 'none'})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "features": list(FEATURES), "coefficients": self.coefficients.tolist()}

    @classmethod
    def from_dict(cls, space: SearchSpace, data: Mapping[str, Any]) -> LatencyPredictor:
        """Rebuilds a predictor saved by `to_dict`.

        Raises:
            LatencyError: the data is of another kind or another set of terms.
        """
        if data.get("kind") != cls.kind:
            raise LatencyError(f"predictor.kind: {data.get('kind')!r} is not {cls.kind!r}")
        coefficients = data.get("coefficients")
        if not isinstance(coefficients, list) or not all(is_number(c) for c in coefficients):
            raise LatencyError("predictor.coefficients: expected a list of numbers")
        return cls(space, _with_reducer_terms(data.get("features"), coefficients))

    # -- the fast path -------------------------------------------------------------------------
    def _predict_valid(self, arch: Arch) -> float:
        grid = arch.img_size // arch.patch_size
        last_dim = arch.stages[-1].embed_dim
        total = self._base(arch)
        tokens = 0
        for index, stage in enumerate(arch.stages):
            tokens = start = self._tokens.get((grid, index)) or self._stage_tokens(grid, index)
            dim = stage.embed_dim
            spec = self.space.stages[index]
            first = None  # the key of the stage's first block that really reduced
            for block, (heads, ratio, rate) in enumerate(zip(stage.num_heads, stage.mlp_ratio, stage.keep_rate)):
                key = (index, tokens, dim, heads, ratio, rate, block_reducer(spec, block, stage))
                entry = self._blocks.get(key) or self._block(key, stage, block)
                total += entry[0]
                if first is None and key[-1] is not None and entry[1] < tokens:
                    first = key
                tokens = entry[1]
            if first is not None:
                total += self._finish(first, start, tokens)
        last = len(arch.stages) - 1
        tokens = self.space.stages[last].output_tokens(tokens, stage_grid(grid, last), arch.stages[last].reducer)
        return total + self._arch_weights[_HEAD] * tokens * last_dim

    def _base(self, arch: Arch) -> float:
        key = (arch.img_size, arch.patch_size, tuple(stage.embed_dim for stage in arch.stages))
        base = self._bases.get(key)
        if base is None:
            base = self._bases[key] = float(self._arch_weights @ arch_row(self.space, arch, final_tokens=0))
        return base

    def _stage_tokens(self, grid: int, index: int) -> int:
        tokens = self._tokens[(grid, index)] = 1 + stage_grid(grid, index) ** 2
        return tokens

    def _block(self, key: tuple[int, int, int, int, float, float, str | None], stage: StageArch,
               block: int) -> tuple[float, int]:
        """Milliseconds and output length of block `block` of `stage`, whose shape `key` describes.

        The shape is `vitnas.space.blocks.block_shape`'s, as the reference path's layout has it;
        every block with the same key has the same shape, so the entry serves them all.
        """
        index, tokens = key[0], key[1]
        shape = block_shape(self.space.stages[index], index, stage, block, tokens)
        entry = self._blocks[key] = (float(self._block_weights @ block_row(shape)), shape.tokens_after)
        return entry

    def _finish(self, first: tuple[int, int, int, int, float, float, str | None], start: int, end: int) -> float:
        """Milliseconds of a stage end (`vitnas.space.cost.stage_finish_macs`): `first` reduced, `start` -> `end` tokens."""
        index, _, dim, heads, _, _, reducer = first
        macs = REDUCERS[reducer].finish_macs(start, end, dim, heads, self.space.stages[index].head_width(dim, heads))
        return float(self._block_weights[_ATTENTION_MACS] * macs) if macs else 0.0


@dataclass(frozen=True)
class PredictionError:
    """How far predictions are from measurements."""

    mape: float  # mean of |predicted - measured| / measured: a fraction, 0.05 is 5%
    max_error: float  # largest |predicted - measured| / measured, a fraction
    kendall_tau: float | None  # rank agreement in [-1, 1]; None under 2 archs or if either side is constant
    count: int  # archs compared

    def __str__(self) -> str:
        tau = "n/a" if self.kendall_tau is None else f"{self.kendall_tau:.3f}"
        return (f"MAPE {100 * self.mape:.2f}%, max error {100 * self.max_error:.2f}%, "
                f"Kendall tau {tau} over {self.count} archs")


def prediction_error(predicted: Sequence[float], measured: Sequence[float]) -> PredictionError:
    """Relative errors and rank agreement of predictions against measurements.

    Raises:
        LatencyError: the sequences are empty or differ in length.
    """
    guess, truth = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if guess.shape != truth.shape or guess.size == 0:
        raise LatencyError(f"prediction_error: need equal, non-empty sequences (got {guess.size}, {truth.size})")
    relative = np.abs(guess - truth) / truth
    tau = float(kendalltau(guess, truth).statistic) if guess.size >= 2 else math.nan
    return PredictionError(
        mape=float(relative.mean()),
        max_error=float(relative.max()),
        kendall_tau=None if math.isnan(tau) else tau,
        count=int(guess.size),
    )


def _with_reducer_terms(features: Any, coefficients: list[float]) -> list[float]:
    """Coefficients in `FEATURES` order; per-reducer terms a profile was saved without weigh 0.

    A profile fitted before a reducer (or any per-reducer term) existed never timed one,
    so a zero there predicts exactly what it predicted when it was saved.

    Raises:
        LatencyError: the saved terms are not `FEATURES` less some per-reducer terms.
    """
    missing = [name for name in FEATURES if not isinstance(features, list) or name not in features]
    if not isinstance(features, list) or [name for name in FEATURES if name in features] != features \
            or not set(missing) <= set(REDUCER_FEATURES):
        raise LatencyError("predictor.features: made with other terms than this vitnas uses; rebuild the profile")
    if len(features) != len(coefficients):
        raise LatencyError(f"predictor.coefficients: expected {len(features)}, one per term, got {len(coefficients)}")
    saved = dict(zip(features, coefficients))
    return [saved.get(name, 0.0) for name in FEATURES]
