"""The spatial context inside a slice: with ``spatial_context="checkerboard"``
(the "ELIC + ours" variant of the paper's appendix B; He et al., CVPR 2021)
a slice is coded in two passes, the anchors (``(h + w)`` even) first.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["SPATIAL_CONTEXTS", "checkerboard_masks"]

#: values accepted by ``DCAEEntropyModel(spatial_context=...)``
SPATIAL_CONTEXTS = (None, "checkerboard")


def checkerboard_masks(hw: Tuple[int, int], device: Optional[torch.device] = None) -> List[Tensor]:
    """Boolean ``(H, W)`` masks of the anchor (``(h + w)`` even) and
    non-anchor positions of a checkerboard, in coding order."""
    hh = torch.arange(hw[0], device=device).view(-1, 1)
    ww = torch.arange(hw[1], device=device).view(1, -1)
    anchor = (hh + ww) % 2 == 0
    return [anchor, ~anchor]
