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


def test_degrade_grid_shows_every_degradation(tmp_path: Path, capsys) -> None:
    from exda.cli import main
    from exda.commands.degrade import MEDICAL_GRID
    from exda.data.io import save_image
    from exda.degradations import list_degradations

    photo = tmp_path / "photo.png"
    save_image(photo, np.random.default_rng(0).random((40, 56, 3), dtype=np.float32))
    out = tmp_path / "grid.png"
    assert main(["degrade", "--grid", str(out), "--photo", str(photo), "--grid-height", "32"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 6 * 40 and im.height > 8 * 32
    medical = sum(len(names) for names in MEDICAL_GRID.values())
    # input + every other degradation but clean, a row of 6 haze/underwater panels, each scan + its degradations
    expected = 1 + (len(list_degradations()) - 1 - medical) + 6 + len(MEDICAL_GRID) + medical
    assert f"wrote {expected} panels" in capsys.readouterr().out
    assert main(["degrade", "--grid", str(out), "--photo", "no_such_sample"]) == 2
