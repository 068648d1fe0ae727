"""Config: defaults, --set overrides, unknown keys and types are errors, save -> load round trip, presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from exda.engine.config import Config, PatchStage, load_config, save_config
from exda.errors import UserError

PRESETS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_defaults_without_file() -> None:
    assert load_config(None) == Config()


def test_overrides_parse_yaml_values(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: exda_restormer_test\noptim:\n  lr: 2e-4\n")
    config = load_config(path, [
        "optim.lr=1e-3",
        "optim.betas=[0.8, 0.9]",
        "data.degradations=[noise15, rain]",
        "data.root=null",
        "model.kwargs.dim=4",
        "train.precision=bf16",
    ])
    assert config.optim.lr == pytest.approx(1e-3)  # "1e-3" is a string to YAML 1.1; accepted as float
    assert config.optim.betas == (0.8, 0.9)
    assert config.data.degradations == ["noise15", "rain"]
    assert config.data.root is None
    assert config.model.kwargs == {"dim": 4}
    assert config.train.precision == "bf16"


def test_yaml_float_without_dot_is_read_as_float(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 2e-4\n  weight_decay: 1\n")
    config = load_config(path)
    assert config.optim.lr == pytest.approx(2e-4)
    assert isinstance(config.optim.weight_decay, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'; valid keys in optim: lr, weight_decay"),
        ("trainer.iters=3", "unknown config key 'trainer'; valid keys in the config: model, data, optim"),
        ("train.iters=1.5", "train.iters must be int, got 1.5"),
        ("train.precision=fp8", "train.precision must be 'auto' | 'fp32' | 'bf16' | 'fp16'"),
        ("data.degradations=noise15", "data.degradations must be list[str]"),
        ("optim.betas=[0.9]", "optim.betas must be tuple[float, float]"),
        ("data.root=3", "data.root must be str | None"),
        ("train.ema_decay=yes", "train.ema_decay must be float, got True"),
        ("train.iters=0", "train.iters has an impossible value 0; it must be >= 1"),
        ("optim.min_lr=1", "optim.min_lr has an impossible value 1.0; it must be 0 <= min_lr <= optim.lr"),
        ("optim.min_lr=-1e-6", "optim.min_lr has an impossible value -1e-06"),
        ("optim.schedule_iters=0", "optim.schedule_iters has an impossible value 0"),
        ("data.strength=-0.5", "data.strength has an impossible value -0.5; it must be >= 0"),
        ("loss.fft_weight=-0.1", "loss.fft_weight has an impossible value -0.1; it must be >= 0"),
        ("data.progressive=3", "data.progressive must be list[PatchStage], got 3"),
        ("data.progressive=[16]", "data.progressive[0] must be a mapping of keys to values, got 16"),
        ("data.progressive=[{iters: 2, patch: 16, batch_size: 2}]",
         "unknown config key 'data.progressive[0].patch'; valid keys in data.progressive[0]: iters, patch_size"),
        ("data.progressive=[{iters: 2, patch_size: 16}]",
         "data.progressive[0] is missing batch_size; it needs iters, patch_size, batch_size"),
        ("data.progressive=[{iters: 2, patch_size: 16, batch_size: 2}, {iters: 0, patch_size: 24, batch_size: 1}]",
         "data.progressive[1].iters has an impossible value 0; it must be >= 1"),
        ("data.progressive=[{iters: 2, patch_size: -16, batch_size: 2}]",
         "data.progressive[0].patch_size has an impossible value -16"),
        ("data.progressive=[{iters: 2, patch_size: 16, batch_size: 0}]",
         "data.progressive[0].batch_size has an impossible value 0"),
        ("train.iters", "must look like section.key=value"),
        ("model=resnet", "model must be a mapping"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_schedule_must_cover_the_warmup() -> None:
    message = r"optim.schedule_iters has an impossible value 9; .* >= max\(1, optim.warmup_iters\) = 10"
    with pytest.raises(UserError, match=message):
        load_config(None, ["optim.warmup_iters=10", "optim.schedule_iters=9"])
    config = load_config(None, ["optim.warmup_iters=10", "optim.schedule_iters=10", "optim.min_lr=2e-4"])
    assert config.optim.schedule_iters == 10 and config.optim.min_lr == config.optim.lr
    assert load_config(None, ["optim.min_lr=0", "data.strength=0", "loss.fft_weight=0"]).optim.min_lr == 0


def test_progressive_stages_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  progressive:\n    - {iters: 2, patch_size: 16, batch_size: 4}\n"
                    "    - iters: 5\n      patch_size: 23\n      batch_size: 1\ntrain:\n  iters: 3\n")
    config = load_config(path)  # the stages need not sum to train.iters
    assert config.data.progressive == [PatchStage(2, 16, 4), PatchStage(5, 23, 1)]
    assert load_config(None).data.progressive == []
    saved = tmp_path / "saved.yaml"
    save_config(config, saved)
    assert load_config(saved) == config


def test_restormer_recipe_uses_the_published_stages() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "restormer_recipe.yaml")
    stages = config.data.progressive
    assert [s.patch_size for s in stages] == [128, 160, 192, 256, 320, 384]
    assert [s.batch_size for s in stages] == [8, 5, 4, 2, 1, 1]
    assert [s.iters for s in stages] == [92000, 64000, 48000, 36000, 36000, 24000]
    assert sum(s.iters for s in stages) == config.train.iters == 300000


def test_unknown_key_in_yaml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  patch: 64\n")
    with pytest.raises(UserError, match="unknown config key 'data.patch'; valid keys in data: layout"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match=r"not valid YAML \(line"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(listing)


def test_saved_config_reloads_equal(tmp_path: Path) -> None:
    config = load_config(None, ["optim.betas=[0.85, 0.95]", "data.val_degradations=[rain]",
                                "model.kwargs.token_grid=2", "loss.kind=charbonnier"])
    path = tmp_path / "sub" / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left behind


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_load(preset: Path) -> None:
    config = load_config(preset)
    assert config.train.iters >= 1
    assert config.optim.schedule_iters is None or config.optim.schedule_iters >= config.optim.warmup_iters


def test_presets_exist() -> None:
    names = {p.stem for p in PRESETS}
    assert {"deg3", "deg5", "cdd11", "weather", "underwater", "medical", "restormer_recipe",
            "tiny_deg3", "tiny_deg5", "tiny_cdd11", "tiny_medical"} <= names


def test_set_takes_several_assignments_after_one_flag_and_repeats() -> None:
    from exda.cli import build_parser

    args = build_parser().parse_args(["train", "--config", "tiny_deg3", "--set", "optim.lr=1e-4", "train.iters=7",
                                      "--out", "runs/x", "--set", "train.seed=3"])
    assert args.overrides == ["optim.lr=1e-4", "train.iters=7", "train.seed=3"]
    config = load_config(PRESETS[0].parent / "tiny_deg3.yaml", args.overrides)
    assert (config.optim.lr, config.train.iters, config.train.seed) == (1e-4, 7, 3)
