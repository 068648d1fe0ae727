"""Read the folder layouts users already have, and build the dataset the engine trains or evaluates on.

Layouts (``root`` is the folder given by the user):
- ``paired``: ``input/`` + ``target/`` (or ``lq/`` + ``gt/``), matched by file name without suffix;
  task ``paired``.
- ``deg3`` / ``deg5`` (PromptIR / AdaIR): train ``Train/Denoise/*`` (clean; noise sigma 15/25/50 added
  on the fly, task ``denoise``), ``Train/Derain/{rainy,gt}``, ``Train/Dehaze/{synthetic,original}``;
  deg5 adds ``Train/Deblur/{blur,sharp}`` and ``Train/Enhance/{low,gt}``. Test ``test/denoise/bsd68``
  (noise redrawn with a fixed seed, tasks ``denoise15/25/50``), ``test/derain/Rain100L/{input,target}``,
  ``test/dehaze/{input,target}``; deg5 adds ``test/deblur/gopro/{input,target}`` and
  ``test/lowlight/lol/{input,target}``. Name rules: derain files match after dropping a leading
  ``norain-`` / ``rain-`` (``rain-001`` <-> ``norain-001``); dehaze inputs match the clean image named by
  the part before the first ``_`` (``0001_0.8_0.2`` <-> ``0001``); extra clean files are ignored there.
- ``cdd11``: ``{train,test}/clear`` and the 11 degraded subsets with the same file names; task = subset.
- ``medical`` (AMIR): ``{PET,CT,MRI}/{train,validation}/{LQ,HQ}`` (the modalities present), task =
  modality in lower case, 1 channel by default.
- ``synthetic``: clean images in ``root`` (or the built-in sample photos when ``root`` is None: TRAIN
  for training, HELDOUT for evaluation; medical slices when every degradation is ``mri*``/``ct*``/
  ``pet*``), degraded on the fly; task = degradation name. Training defaults to at least
  ``SYNTHETIC_TRAIN_LENGTH`` items per epoch since sample pools are small.
Split ``train`` redraws crops/flips/parameters every epoch; ``test`` (alias ``val``) is fixed per index.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from torch.utils.data import Dataset

from exda.data.datasets import (
    CleanImage,
    ImagePair,
    MixedDataset,
    PairedFileDataset,
    RestorationDataset,
    SyntheticDataset,
)
from exda.data.io import image_stem, list_images
from exda.data.transforms import PairTransform
from exda.errors import UserError

LAYOUTS: tuple[str, ...] = ("paired", "deg3", "deg5", "cdd11", "medical", "synthetic")
SPLITS: tuple[str, ...] = ("train", "test", "val")
CDD11_SUBSETS: tuple[str, ...] = (
    "low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow", "haze_rain", "haze_snow",
    "low_haze_rain", "low_haze_snow",
)
MEDICAL_MODALITIES: tuple[str, ...] = ("PET", "CT", "MRI")
MEDICAL_DEGRADATION_PREFIXES: tuple[str, ...] = ("mri", "ct", "pet")
DENOISE_SIGMAS: tuple[int, ...] = (15, 25, 50)
PROMPTIR_TEST_MULTIPLE = 16  # deg3/deg5 test images: sides cropped to multiples of 16
SYNTHETIC_TRAIN_LENGTH = 1024
KeyRule = Callable[[str], str]


def _same(stem: str) -> str:
    return stem


def _derain_key(stem: str) -> str:
    for prefix in ("norain-", "rain-"):
        if stem.startswith(prefix):
            return stem[len(prefix) :]
    return stem


def _dehaze_key(stem: str) -> str:
    return stem.split("_", 1)[0]


def pair_folders(
    lq_dir: Path, gt_dir: Path, task: str, *, lq_key: KeyRule = _same, gt_key: KeyRule = _same,
    rule: str = "same file name without suffix", every_target: bool = True,
) -> list[ImagePair]:
    """Match every image in ``lq_dir`` to the one in ``gt_dir`` with the same key (several may share one).

    ``every_target`` also requires each target to have an input; the first unmatched file is named.
    """
    lq_files, gt_files = list_images(lq_dir), list_images(gt_dir)
    for folder, files in ((lq_dir, lq_files), (gt_dir, gt_files)):
        if not files:
            raise UserError(f"no images in {folder}")
    targets: dict[str, Path] = {}
    for path in gt_files:
        key = gt_key(image_stem(path))
        if key in targets:
            raise UserError(f"two targets match the same name ({rule}): {targets[key]} and {path}")
        targets[key] = path
    pairs, used = [], set()
    for path in lq_files:
        key = lq_key(image_stem(path))
        if key not in targets:
            raise UserError(f"no target for {path} in {gt_dir} (pairs match by {rule})")
        used.add(key)
        pairs.append(ImagePair(lq=path, gt=targets[key], task=task, name=image_stem(path)))
    if every_target:
        for key, path in targets.items():
            if key not in used:
                raise UserError(f"no input for {path} in {lq_dir} (pairs match by {rule})")
    return pairs


def _require(root: Path, layout: str, *folders: str) -> list[Path]:
    paths = [root / folder for folder in folders]
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{layout} layout: expected folder {path}")
    return paths


def _paired_dirs(root: Path) -> tuple[Path, Path]:
    for lq, gt in (("input", "target"), ("lq", "gt")):
        if (root / lq).is_dir() and (root / gt).is_dir():
            return root / lq, root / gt
    raise UserError(f"expected {root}/input and {root}/target (or lq/ and gt/)")


def _clean_images(paths: Sequence[Path]) -> list[CleanImage]:
    return [CleanImage(name=image_stem(path), path=path) for path in paths]


# PromptIR/AdaIR folders per split: clean images for synthetic denoising, then (task, input, target)
# folders; deg3 uses the first two pairs, deg5 all four.
_DEG_DENOISE = {"train": "Train/Denoise", "test": "test/denoise/bsd68"}
_DEG_PAIRS = {
    "train": [("derain", "Train/Derain/rainy", "Train/Derain/gt"),
              ("dehaze", "Train/Dehaze/synthetic", "Train/Dehaze/original"),
              ("deblur", "Train/Deblur/blur", "Train/Deblur/sharp"),
              ("lowlight", "Train/Enhance/low", "Train/Enhance/gt")],
    "test": [("derain", "test/derain/Rain100L/input", "test/derain/Rain100L/target"),
             ("dehaze", "test/dehaze/input", "test/dehaze/target"),
             ("deblur", "test/deblur/gopro/input", "test/deblur/gopro/target"),
             ("lowlight", "test/lowlight/lol/input", "test/lowlight/lol/target")],
}


def _deg_parts(root: Path, layout: str, train: bool, transform: PairTransform) -> list[RestorationDataset]:
    """PromptIR/AdaIR 3- or 5-task folders as one dataset per task. Test images are centre-cropped to
    multiples of 16 first, as PromptIR's / AdaIR's test datasets do (``crop_img(..., base=16)``)."""
    split = "train" if train else "test"
    if not train:
        transform = replace(transform, crop_multiple=PROMPTIR_TEST_MULTIPLE)
    rules = {
        "derain": {"lq_key": _derain_key, "gt_key": _derain_key, "rule": "name without a leading 'rain-'/'norain-'"},
        "dehaze": {"lq_key": _dehaze_key, "rule": "the part before the first '_'", "every_target": False},
    }
    (denoise,) = _require(root, layout, _DEG_DENOISE[split])
    clean = _clean_images(list_images(denoise))
    if not clean:
        raise UserError(f"no images in {denoise}")
    noise = [f"noise{sigma}" for sigma in DENOISE_SIGMAS]
    # Training mixes the sigmas under one task; the test set reports each sigma (BSD68 protocol).
    tasks = ["denoise"] * len(noise) if train else [f"denoise{sigma}" for sigma in DENOISE_SIGMAS]
    parts: list[RestorationDataset] = [SyntheticDataset(clean, noise, transform, tasks=tasks)]
    for task, lq, gt in _DEG_PAIRS[split][: 4 if layout == "deg5" else 2]:
        lq_dir, gt_dir = _require(root, layout, lq, gt)
        parts.append(PairedFileDataset(pair_folders(lq_dir, gt_dir, task, **rules.get(task, {})), transform))
    return parts


def _cdd11_parts(root: Path, train: bool, transform: PairTransform) -> list[RestorationDataset]:
    split = "train" if train else "test"
    folders = _require(root, "cdd11", *(f"{split}/{name}" for name in ("clear", *CDD11_SUBSETS)))
    clear = folders[0]
    return [PairedFileDataset(pair_folders(folder, clear, folder.name), transform) for folder in folders[1:]]


def _medical_parts(root: Path, train: bool, transform: PairTransform) -> list[RestorationDataset]:
    splits = ("train",) if train else ("validation", "test")
    parts: list[RestorationDataset] = []
    for modality in MEDICAL_MODALITIES:
        for split in splits:
            lq_dir, gt_dir = root / modality / split / "LQ", root / modality / split / "HQ"
            if lq_dir.is_dir() or gt_dir.is_dir():
                _require(root, "medical", f"{modality}/{split}/LQ", f"{modality}/{split}/HQ")
                parts.append(PairedFileDataset(pair_folders(lq_dir, gt_dir, modality.lower()), transform))
                break
    if not parts:
        expected = "train" if train else "validation"
        raise UserError(f"medical layout: expected {root}/{{PET,CT,MRI}}/{expected}/{{LQ,HQ}} (at least one modality)")
    return parts


def _is_medical(degradations: Sequence[str]) -> bool:
    return bool(degradations) and all(name.startswith(MEDICAL_DEGRADATION_PREFIXES) for name in degradations)


def _synthetic_parts(
    root: Path | None, train: bool, degradations: Sequence[str], transform: PairTransform, strength: float,
    scene_colour: float,
) -> list[RestorationDataset]:
    if not degradations:
        raise UserError("the synthetic layout needs at least one degradation name")
    if root is None:
        from exda.data.samples import load_sample, sample_names

        kind = "medical" if _is_medical(degradations) else "natural"
        names = sample_names("train" if train else "heldout", kind)
        images = [CleanImage(name=name, pixels=load_sample(name)) for name in names]
    else:
        images = _clean_images(list_images(root))
        if not images:
            raise UserError(f"synthetic layout: no images in {root}")
    return [SyntheticDataset(images, [name], transform, strength=strength, scene_colour=scene_colour)
            for name in degradations]


def build_dataset(
    layout: str,
    root: str | Path | None,
    split: str,
    *,
    degradations: Sequence[str] = (),
    patch_size: int | None = None,
    augment: bool = False,
    in_channels: int | None = None,
    seed: int = 0,
    length: int | None = None,
    strength: float = 1.0,
    task_repeats: Mapping[str, int] | None = None,
    scene_colour: float = 0.0,
) -> Dataset:
    """The dataset for ``layout`` under ``root`` and ``split`` ("train", or "test"/"val": fixed per index).

    ``in_channels`` None means the layout's default (1 for medical data, 3 otherwise). ``task_repeats``
    repeats a task's items that many times per epoch (e.g. the small Rain100L set in deg3 training).
    ``degradations`` and ``scene_colour`` (tinted clean scenes: :class:`SyntheticDataset`) are used by the
    ``synthetic`` layout only.
    """
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}' (choose from {', '.join(LAYOUTS)})")
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    if degradations and layout != "synthetic":
        raise UserError(f"degradations apply to the synthetic layout only, not '{layout}'")
    if scene_colour and layout != "synthetic":
        raise UserError(f"scene_colour applies to the synthetic layout only, not '{layout}'")
    root_path = None if root is None else Path(root).expanduser()
    if root_path is None and layout != "synthetic":
        raise UserError(f"the {layout} layout needs a data folder")
    if root_path is not None and not root_path.is_dir():
        raise UserError(f"data folder not found: {root_path}")
    medical = layout == "medical" or (layout == "synthetic" and root is None and _is_medical(degradations))
    channels = in_channels if in_channels is not None else (1 if medical else 3)
    transform = PairTransform(channels, patch_size, augment)
    train = split == "train"
    if layout == "paired":
        lq_dir, gt_dir = _paired_dirs(root_path)
        parts: list[RestorationDataset] = [PairedFileDataset(pair_folders(lq_dir, gt_dir, "paired"), transform)]
    elif layout in ("deg3", "deg5"):
        parts = _deg_parts(root_path, layout, train, transform)
    elif layout == "cdd11":
        parts = _cdd11_parts(root_path, train, transform)
    elif layout == "medical":
        parts = _medical_parts(root_path, train, transform)
    else:
        parts = _synthetic_parts(root_path, train, degradations, transform, strength, scene_colour)
    _apply_repeats(parts, task_repeats or {})
    if layout == "synthetic" and train and length is None:
        length = max(sum(len(part) for part in parts), SYNTHETIC_TRAIN_LENGTH)
    return MixedDataset(parts, seed=seed, fixed=not train, length=length)


def _part_tasks(part: RestorationDataset) -> set[str]:
    if isinstance(part, SyntheticDataset):
        return set(part.tasks)
    return {pair.task for pair in part.pairs}


def _apply_repeats(parts: Sequence[RestorationDataset], repeats: Mapping[str, int]) -> None:
    known = set().union(*(_part_tasks(part) for part in parts))
    for task, times in repeats.items():
        if task not in known:
            raise UserError(f"task_repeats names unknown task '{task}' (tasks here: {', '.join(sorted(known))})")
        if times < 1:
            raise UserError(f"task_repeats['{task}'] must be >= 1, got {times}")
    for part in parts:
        times = max((repeats.get(task, 1) for task in _part_tasks(part)), default=1)
        if times > 1:
            part.length = times * part.num_items()
