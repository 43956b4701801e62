"""NASViT's gradient-conflict projection for supernet training steps of several passes.

In a sandwich step the largest sub-network and the smaller ones add their gradients
into the same shared weights. NASViT found that they often point against each other
(negative dot product), so the small sub-networks undo part of what the largest
learned, and the supernet ranks sub-networks worse. The remedy: when a smaller
sub-network's gradient conflicts with the largest's, project it onto the normal plane
of the largest's gradient (remove the conflicting component) before adding it.

`ConflictProjection` works on the gradients the passes of one step accumulate: the
first pass (the largest sub-network, in the sandwich and supervit samplers) sets the
reference, and each later pass's own contribution (gradients after it minus before it)
is projected where it conflicts. One flat copy of all gradients per pass (the total after
one pass is the "before" of the next): cheap next to the passes themselves.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

__all__ = ["ConflictProjection"]


class ConflictProjection:
    """Projects each pass's gradient that conflicts with the step's first pass; counts the conflicts."""

    def __init__(self, parameters: Iterable[nn.Parameter]) -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        self.reference: Tensor | None = None
        self.before: Tensor | None = None
        self.passes = 0  # later passes seen since `take_counts`
        self.conflicts = 0  # of which conflicted and were projected

    def begin_step(self) -> None:
        """Call before a step's first backward: remembers the gradients it starts from (none after zero_grad)."""
        self.reference = None
        self.before = self._flat()

    def end_pass(self) -> None:
        """Call after a pass's backward: the first pass becomes the reference, later ones are projected."""
        after = self._flat()
        contribution = after - self.before
        if self.reference is None:
            self.reference = contribution
        else:
            self.passes += 1
            dot = torch.dot(contribution, self.reference)
            norm = torch.dot(self.reference, self.reference)
            if dot < 0 and norm > 0:
                self.conflicts += 1
                after = self.before + contribution - (dot / norm) * self.reference
                self._write(after)
        self.before = after  # the next pass starts from what this one left

    def take_counts(self) -> tuple[int, int]:
        """(conflicting passes, later passes) since the last call."""
        counts = (self.conflicts, self.passes)
        self.conflicts = self.passes = 0
        return counts

    def _flat(self) -> Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in self.parameters])

    def _write(self, flat: Tensor) -> None:
        """Writes `flat` back; parameters no pass touched keep no gradient (their slice is zero), so the optimizer
        still skips them as it would without projection."""
        offset = 0
        for parameter in self.parameters:
            count = parameter.numel()
            if parameter.grad is not None:
                parameter.grad.copy_(flat[offset:offset + count].view_as(parameter))
            offset += count
