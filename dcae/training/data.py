"""Training data: the images of a folder held in memory, drawn as random
crops with random flips by a seeded generator (:class:`ImageFolder`), and the
split into training and validation images (:func:`datasets`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..config import TrainConfig
from ..errors import DCAEError
from ..format.images import image_files
from ..format.padding import pad_image
from ..format.pixels import from_8bit, read_rgb

__all__ = ["ImageFolder", "centre_crop", "datasets"]


class ImageFolder:
    """All images of a folder held in memory as uint8 tensors ``(3, H, W)``.

    Args:
        root: folder (not recursive).
        files: explicit list of files instead of ``root``'s content.
    """

    def __init__(self, root: Optional[str] = None, files: Optional[Sequence[Path]] = None):
        if files is None:
            if root is None or not Path(root).is_dir():
                raise DCAEError(f"training folder {root!r} does not exist")
            files = image_files(root)
        if not files:
            raise DCAEError(f"no images in {root!r}")
        self.files = list(files)
        self.images: List[Tensor] = []
        for f in self.files:
            self.images.append(torch.from_numpy(read_rgb(f)).permute(2, 0, 1).contiguous())

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, batch_size: int, patch: int, generator: torch.Generator) -> Tensor:
        """Random crops (padded by edge replication if an image is smaller) with random
        horizontal/vertical flips, as floats in [0, 1]."""
        idx = torch.randint(len(self.images), (batch_size,), generator=generator)
        out = []
        for i in idx.tolist():
            img = self.images[i]
            _, h, w = img.shape
            if h < patch or w < patch:
                grown = (0, max(0, patch - w), 0, max(0, patch - h))  # right and bottom
                img = pad_image(img[None].float(), grown)[0].to(torch.uint8)
                _, h, w = img.shape
            top = int(torch.randint(h - patch + 1, (1,), generator=generator))
            left = int(torch.randint(w - patch + 1, (1,), generator=generator))
            crop = img[:, top : top + patch, left : left + patch]
            flips = torch.rand(2, generator=generator)
            if flips[0] < 0.5:
                crop = crop.flip(-1)
            if flips[1] < 0.5:
                crop = crop.flip(-2)
            out.append(crop)
        return from_8bit(torch.stack(out))


def centre_crop(img: Tensor, size: int) -> Tensor:
    _, h, w = img.shape
    th, tw = min(h, size), min(w, size)
    top, left = (h - th) // 2, (w - tw) // 2
    return img[:, top : top + th, left : left + tw].contiguous()


def datasets(cfg: TrainConfig) -> Tuple[ImageFolder, Optional[ImageFolder]]:
    """Training images and validation images (the last ``val_split`` files of
    ``cfg.data`` unless ``cfg.val`` names a folder; centre crops of at most
    ``cfg.val_crop`` pixels when set)."""
    data, val_set = _split_datasets(cfg)
    if val_set is not None and cfg.val_crop > 0:
        val_set.images = [centre_crop(img, cfg.val_crop) for img in val_set.images]
    return data, val_set


def _split_datasets(cfg: TrainConfig) -> Tuple[ImageFolder, Optional[ImageFolder]]:
    files = image_files(cfg.data)
    if cfg.val is None and cfg.val_split > 0 and len(files) > cfg.val_split:
        train_files, val_files = files[: -cfg.val_split], files[-cfg.val_split :]
        val_set: Optional[ImageFolder] = ImageFolder(files=val_files)
    else:
        train_files = files
        val_set = ImageFolder(cfg.val) if cfg.val else None
    data = ImageFolder(files=train_files) if train_files else ImageFolder(cfg.data)
    return data, val_set
