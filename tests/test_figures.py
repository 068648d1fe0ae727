"""Image grids for the docs: gap-free layout, and the eval grid keeps every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from exda.engine.evaluate import evaluate_model
from exda.figures import save_image_grid


def test_grid_size_follows_the_images_and_rows_are_centred(tmp_path: Path) -> None:
    wide, square = np.ones((20, 30, 3), np.float32), np.zeros((25, 25, 1), np.float32)
    save_image_grid([[(wide, "a"), (wide, "b")], [(square, "gray")]], tmp_path / "g.png", cell_height=1.0,
                    caption_height=0.25, gap=0.05, dpi=100)
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (round(100 * (2 * 1.5 + 3 * 0.05)), round(100 * (2 * 1.25 + 3 * 0.05)))
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    bottom = pixels[-60:-10]  # the gray square, centred: dark in the middle, white page at both sides
    assert bottom[:, 150:165].mean() < 10 and bottom[:, :100].mean() > 245 and bottom[:, -100:].mean() > 245


def test_eval_keeps_the_first_image_of_every_task() -> None:
    g = torch.Generator().manual_seed(0)
    items = [{"lq": torch.rand(3, 17, 13, generator=g), "gt": torch.rand(3, 17, 13, generator=g), "task": task,
              "name": f"img{i}", "params": {}} for i, task in enumerate(["a", "a", "a", "b", "c", "c"])]
    result = evaluate_model(nn.Identity(), items, keep_per_task=1)
    assert result.triplet_labels == ["a/img0", "b/img3", "c/img4"]
    assert torch.equal(result.triplets[1][0], items[3]["lq"])
