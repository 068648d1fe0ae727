"""Dataset layouts read from tiny trees built in tmp_path, item contract, crops, determinism, collate."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from exda.data import LAYOUTS, build_dataset, collate_restoration
from exda.data.io import image_stem, save_image
from exda.data.layouts import CDD11_SUBSETS
from exda.data.transforms import PairTransform
from exda.errors import UserError

H, W = 31, 37
RNG_SEED = 0


def _write(folder: Path, names: Sequence[str], seed: int = RNG_SEED, channels: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        save_image(folder / name, rng.random((H, W, channels), dtype=np.float32))


def _check_item(item: dict, channels: int = 3, size: tuple[int, int] = (H, W)) -> None:
    assert set(item) == {"lq", "gt", "task", "name", "params"}
    for key in ("lq", "gt"):
        tensor = item[key]
        assert tensor.dtype == torch.float32 and tensor.shape == (channels, *size)
        assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    assert isinstance(item["task"], str) and isinstance(item["name"], str) and isinstance(item["params"], dict)


def _paired_tree(root: Path, lq: str = "input", gt: str = "target", same: bool = False) -> None:
    _write(root / lq, ["a.png", "b.png"], seed=1)
    _write(root / gt, ["a.png", "b.png"], seed=1 if same else 2)


@pytest.mark.parametrize(
    ("name", "stem"), [("a.png", "a"), ("scan.NII.GZ", "scan"), ("x.nii", "x"), ("img.01.tif", "img.01")]
)
def test_image_stem_drops_the_image_suffix(name: str, stem: str) -> None:
    assert image_stem(Path("data") / name) == stem


@pytest.mark.parametrize("folders", [("input", "target"), ("lq", "gt")])
def test_paired_layout(tmp_path: Path, folders: tuple[str, str]) -> None:
    _paired_tree(tmp_path, *folders)
    dataset = build_dataset("paired", tmp_path, "test")
    assert len(dataset) == 2 and "paired" in LAYOUTS
    item = dataset[1]
    _check_item(item)
    assert item["name"] == "b" and item["task"] == "paired" and item["params"] == {}


def test_paired_errors_name_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"expected .*/input and .*/target \(or lq/ and gt/\)"):
        build_dataset("paired", tmp_path, "train")
    _write(tmp_path / "input", ["a.png", "b.png"])
    _write(tmp_path / "target", ["a.png", "c.png"])
    with pytest.raises(UserError, match=r"no target for .*b\.png"):
        build_dataset("paired", tmp_path, "train")
    (tmp_path / "input" / "b.png").unlink()
    with pytest.raises(UserError, match=r"no input for .*c\.png"):
        build_dataset("paired", tmp_path, "train")
    with pytest.raises(UserError, match="unknown layout"):
        build_dataset("folders", tmp_path, "train")


def test_paired_crops_and_augmentation_stay_aligned(tmp_path: Path) -> None:
    _paired_tree(tmp_path, same=True)
    dataset = build_dataset("paired", tmp_path, "train", patch_size=16, augment=True, seed=3)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            _check_item(item, size=(16, 16))
            assert torch.equal(item["lq"], item["gt"])


def test_small_images_are_reflect_padded_to_the_patch(tmp_path: Path) -> None:
    _paired_tree(tmp_path, same=True)
    item = build_dataset("paired", tmp_path, "train", patch_size=40)[0]
    _check_item(item, size=(40, 40))
    assert torch.equal(item["lq"], item["gt"])
    assert torch.equal(item["gt"][:, H, :W], item["gt"][:, H - 2, :W])  # reflected row below the image


def test_item_is_a_function_of_seed_epoch_and_index(tmp_path: Path) -> None:
    _paired_tree(tmp_path)

    def draw(seed: int, epoch: int, index: int) -> torch.Tensor:
        dataset = build_dataset("paired", tmp_path, "train", patch_size=8, augment=True, seed=seed)
        dataset.set_epoch(epoch)
        return dataset[index]["lq"]

    assert torch.equal(draw(0, 2, 1), draw(0, 2, 1))
    assert not torch.equal(draw(0, 2, 1), draw(0, 3, 1))
    assert not torch.equal(draw(0, 2, 1), draw(1, 2, 1))


def test_channel_conversion(tmp_path: Path) -> None:
    _write(tmp_path / "input", ["a.png"], channels=1)
    _write(tmp_path / "target", ["a.png"], channels=3)
    item = build_dataset("paired", tmp_path, "test", in_channels=3)[0]
    assert torch.equal(item["lq"][0], item["lq"][2])
    gray = build_dataset("paired", tmp_path, "test", in_channels=1)[0]
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    torch.testing.assert_close(gray["gt"][0], (item["gt"] * weights).sum(0))
    with pytest.raises(UserError, match="in_channels"):
        build_dataset("paired", tmp_path, "test", in_channels=2)


def test_collate_stacks_tensors_and_keeps_lists(tmp_path: Path) -> None:
    _paired_tree(tmp_path)
    dataset = build_dataset("paired", tmp_path, "train", patch_size=16)
    batch = collate_restoration([dataset[0], dataset[1]])
    assert batch["lq"].shape == (2, 3, 16, 16) and batch["gt"].shape == (2, 3, 16, 16)
    assert batch["task"] == ["paired", "paired"] and batch["name"] == ["a", "b"] and batch["params"] == [{}, {}]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_restoration)
    assert torch.equal(next(iter(loader))["lq"], batch["lq"])


def _deg_tree(root: Path, five: bool) -> None:
    _write(root / "Train/Denoise", ["c1.png", "c2.png"])
    _write(root / "Train/Derain/rainy", ["rain-001.png", "rain-002.png"], seed=1)
    _write(root / "Train/Derain/gt", ["norain-001.png", "norain-002.png"], seed=2)
    _write(root / "Train/Dehaze/synthetic", ["0001_0.8_0.2.png", "0001_0.9_0.1.png", "0002_0.8_0.2.png"], seed=3)
    _write(root / "Train/Dehaze/original", ["0001.png", "0002.png", "0003.png"], seed=4)
    _write(root / "test/denoise/bsd68", ["t1.png"])
    _write(root / "test/derain/Rain100L/input", ["rain-1.png"], seed=5)
    _write(root / "test/derain/Rain100L/target", ["norain-1.png"], seed=6)
    _write(root / "test/dehaze/input", ["0005_1_0.2.png"], seed=7)
    _write(root / "test/dehaze/target", ["0005.png"], seed=8)
    if five:
        _write(root / "Train/Deblur/blur", ["g.png"], seed=9)
        _write(root / "Train/Deblur/sharp", ["g.png"], seed=10)
        _write(root / "Train/Enhance/low", ["l.png"], seed=11)
        _write(root / "Train/Enhance/gt", ["l.png"], seed=12)
        _write(root / "test/deblur/gopro/input", ["g.png"], seed=13)
        _write(root / "test/deblur/gopro/target", ["g.png"], seed=14)
        _write(root / "test/lowlight/lol/input", ["l.png"], seed=15)
        _write(root / "test/lowlight/lol/target", ["l.png"], seed=16)


def _tasks(dataset: torch.utils.data.Dataset) -> list[str]:
    return [dataset[i]["task"] for i in range(len(dataset))]


@pytest.mark.parametrize("layout", ["deg3", "deg5"])
def test_promptir_layouts(tmp_path: Path, layout: str) -> None:
    five = layout == "deg5"
    _deg_tree(tmp_path, five)
    train = build_dataset(layout, tmp_path, "train", patch_size=16, augment=True)
    expected = ["denoise"] * 6 + ["derain"] * 2 + ["dehaze"] * 3 + (["deblur", "lowlight"] if five else [])
    assert _tasks(train) == expected
    names = [train[i]["name"] for i in range(len(train))]
    assert names[:2] == ["c1_denoise", "c2_denoise"] and names[6:9] == ["rain-001", "rain-002", "0001_0.8_0.2"]
    assert train[0]["params"]["sigma"] == 15 and train[2]["params"]["sigma"] == 25
    test = build_dataset(layout, tmp_path, "test")
    expected_test = ["denoise15", "denoise25", "denoise50", "derain", "dehaze"]
    expected_test += ["deblur", "lowlight"] if five else []
    assert _tasks(test) == expected_test
    _check_item(test[2], size=(16, 32))  # 31 x 37 centre-cropped to multiples of 16, as PromptIR's crop_img
    repeated = build_dataset(layout, tmp_path, "train", task_repeats={"derain": 3})
    assert len(repeated) == len(train) + 4
    capped = build_dataset(layout, tmp_path, "test", length=3)  # a cap spreads over the tasks
    assert _tasks(capped) == (["denoise15", "denoise50", "dehaze"] if five else ["denoise15", "denoise25", "derain"])


def test_promptir_pairing_follows_names(tmp_path: Path) -> None:
    """rain-001 pairs with norain-001; every hazy 0001_* pairs with clear 0001 (the extra 0003 is unused)."""
    _deg_tree(tmp_path, five=False)
    (tmp_path / "Train/Derain/gt/norain-002.png").rename(tmp_path / "Train/Derain/gt/clean-002.png")
    with pytest.raises(UserError, match=r"no target for .*rain-002\.png"):
        build_dataset("deg3", tmp_path, "train")
    (tmp_path / "Train/Derain/gt/clean-002.png").rename(tmp_path / "Train/Derain/gt/norain-002.png")
    dataset = build_dataset("deg3", tmp_path, "train")
    hazy = [dataset[i] for i in (8, 9)]
    assert torch.equal(hazy[0]["gt"], hazy[1]["gt"]) and not torch.equal(hazy[0]["lq"], hazy[1]["lq"])


def test_deg_layout_names_missing_folder(tmp_path: Path) -> None:
    _deg_tree(tmp_path, five=False)
    with pytest.raises(UserError, match=r"deg5 layout: expected folder .*Train/Deblur/blur"):
        build_dataset("deg5", tmp_path, "train")


def test_cdd11_layout(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for index, subset in enumerate(("clear", *CDD11_SUBSETS)):
            _write(tmp_path / split / subset, ["001.png", "002.png"], seed=index)
    dataset = build_dataset("cdd11", tmp_path, "test")
    assert len(dataset) == 22 and sorted(set(_tasks(dataset))) == sorted(CDD11_SUBSETS)
    item = dataset[len(dataset) - 1]
    assert item["task"] == "low_haze_snow" and item["name"] == "002"
    assert torch.equal(item["gt"], dataset[1]["gt"])  # both are clear/002
    shutil.rmtree(tmp_path / "train" / "haze_rain")
    with pytest.raises(UserError, match=r"cdd11 layout: expected folder .*train/haze_rain"):
        build_dataset("cdd11", tmp_path, "train")


def test_medical_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for modality in ("CT", "MRI"):
        for split in ("train", "validation"):
            for folder in ("LQ", "HQ"):
                (tmp_path / modality / split / folder).mkdir(parents=True)
                for name in ("s1", "s2"):
                    np.save(tmp_path / modality / split / folder / f"{name}.npy", rng.random((H, W), np.float32))
    dataset = build_dataset("medical", tmp_path, "test")
    assert _tasks(dataset) == ["ct", "ct", "mri", "mri"]
    _check_item(dataset[0], channels=1)
    assert build_dataset("medical", tmp_path, "train", in_channels=3)[0]["lq"].shape[0] == 3
    with pytest.raises(UserError, match=r"medical layout: expected .*\{PET,CT,MRI\}"):
        build_dataset("medical", tmp_path / "CT", "train")


def test_synthetic_layout_from_folder(tmp_path: Path) -> None:
    _write(tmp_path, ["x.png", "y.png"])
    train = build_dataset("synthetic", tmp_path, "train", degradations=["noise25", "rain"], patch_size=16, length=6)
    assert len(train) == 6 and _tasks(train) == ["noise25", "noise25", "rain", "rain", "noise25", "noise25"]
    _check_item(train[3], size=(16, 16))
    first = train[0]
    train.set_epoch(1)
    assert first["params"] != train[0]["params"]  # training redraws per epoch

    test = build_dataset("synthetic", tmp_path, "test", degradations=["noise25"])
    before = test[1]
    test.set_epoch(5)
    after = test[1]
    assert before["params"] == after["params"] and torch.equal(before["lq"], after["lq"])
    assert not torch.equal(before["lq"], before["gt"]) and before["name"] == "y_noise25"
    with pytest.raises(UserError, match="at least one degradation"):
        build_dataset("synthetic", tmp_path, "train")
    with pytest.raises(UserError, match="unknown degradation"):
        build_dataset("synthetic", tmp_path, "train", degradations=["fog_of_war"])


def test_scene_colour_tints_half_the_clean_crops_and_is_off_by_default(tmp_path: Path) -> None:
    _write(tmp_path, ["x.png", "y.png"])
    plain = build_dataset("synthetic", tmp_path, "train", degradations=["clean"], patch_size=16, length=64)
    tinted = build_dataset("synthetic", tmp_path, "train", degradations=["clean"], patch_size=16, length=64,
                           scene_colour=0.4)
    ratios = []
    for index in range(64):
        before, after = plain[index], tinted[index]
        assert torch.equal(after["lq"], after["gt"])  # an identity pair stays one
        gains = after["gt"].sum((1, 2)) / before["gt"].sum((1, 2))  # the same crop, scaled per channel
        torch.testing.assert_close(after["gt"], before["gt"] * gains.view(3, 1, 1))
        assert float(gains.max()) == pytest.approx(1.0) and float(gains.min()) > 0
        ratios.append(float(gains.min()))
    changed = sum(ratio < 0.999 for ratio in ratios)
    assert 16 <= changed <= 48  # about half
    assert min(ratios) < 0.7  # strong enough to make a red-starved (underwater-looking) scene
    # underwater casts its own colour: its clean crops stay as they are, the same items as without the option
    underwater = [build_dataset("synthetic", tmp_path, "train", degradations=["underwater"], patch_size=16,
                                length=8, scene_colour=spread) for spread in (0.0, 0.4)]
    assert all(torch.equal(underwater[0][i]["gt"], underwater[1][i]["gt"]) for i in range(8))
    with pytest.raises(UserError, match="synthetic layout only"):
        _paired_tree(tmp_path / "p")
        build_dataset("paired", tmp_path / "p", "train", scene_colour=0.4)
    with pytest.raises(UserError, match="in_channels 3"):
        build_dataset("synthetic", tmp_path, "train", degradations=["clean"], in_channels=1, scene_colour=0.4)
    with pytest.raises(UserError, match=">= 0"):
        build_dataset("synthetic", tmp_path, "train", degradations=["clean"], scene_colour=-1)


def test_synthetic_layout_from_sample_photos() -> None:
    train = build_dataset("synthetic", None, "train", degradations=["haze"], patch_size=24, augment=True)
    assert len(train) >= 1024  # small pools repeat to a useful epoch
    _check_item(train[0], size=(24, 24))
    test = build_dataset("synthetic", None, "test", degradations=["noise50"], patch_size=24)
    assert {item["name"] for item in (test[i] for i in range(len(test)))} == {
        "coffee_noise50", "flower_noise50", "grace_hopper_noise50"}
    medical = build_dataset("synthetic", None, "test", degradations=["mri"], patch_size=24)
    _check_item(medical[0], channels=1, size=(24, 24))


def test_promptir_test_crop_matches_crop_img() -> None:
    # PromptIR utils/image_utils.py crop_img(image, base=16): image[r_h // 2 : h - r_h + r_h // 2, ...]
    image = np.arange(45 * 50 * 3, dtype=np.float32).reshape(45, 50, 3)
    (out,) = PairTransform(3, crop_multiple=16)([image], torch.Generator())
    assert torch.equal(out, torch.from_numpy(image[6:38, 1:49].transpose(2, 0, 1).copy()))
