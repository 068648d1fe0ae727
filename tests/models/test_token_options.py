"""The global spatial token's options: each acts at 64 and 512 px, cells line up, checkpoints
record the options they were trained with (the shipped ones the first reading)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from exda.data.samples import load_sample
from exda.inference.loader import load_network
from exda.layers import GlobalSpatialToken, LayerNorm2d, TokenOptions, TransposedAttention
from exda.layers.global_token import token_kwargs

REPO = Path(__file__).resolve().parents[2]
SIZES = (64, 512)


def photo_features(size: int) -> torch.Tensor:
    """Eight channels of a real photo (fixed random 1x1 mix of its RGB), size x size."""
    image = torch.from_numpy(np.ascontiguousarray(load_sample("coffee"))).permute(2, 0, 1)[None]
    image = F.interpolate(image[..., :400, :400], size=(size, size), mode="bilinear", antialias=True)
    return F.conv2d(image, torch.randn(8, 3, 1, 1, generator=torch.Generator().manual_seed(3)))


FIRST = dict(upsample="nearest", softmax="raw", column_scale="none", input="raw")  # the first reading
FIRST_KWARGS = TokenOptions(**FIRST).as_kwargs()


def attention(x: torch.Tensor, x_in: torch.Tensor, kind: str = "row", **options) -> torch.Tensor:
    """One attention with the token's first reading, changed by ``options``."""
    torch.manual_seed(0)
    module = TransposedAttention(8, 2, global_token=kind, token=TokenOptions(**{**FIRST, **options}))
    with torch.no_grad():
        return module(x, x_in=x_in)


def change(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    return ((a - b).norm() / scale.norm()).item()


@pytest.mark.parametrize("size", SIZES)
def test_every_token_option_changes_the_attention_output(size):
    raw = photo_features(size)
    x = LayerNorm2d(8)(raw).detach()
    off = attention(x, raw, "off")  # the scale: changes are relative to the plain attention's output
    first = attention(x, raw)
    assert change(first, off, off) > 0.5  # the row token acts (it is large next to the value rows)
    standardized = attention(x, raw, softmax="standardized")
    assert change(standardized, first, off) > 0.3
    assert change(attention(x, raw, input="normalized"), first, off) > 0.01
    assert change(attention(x, raw, softmax="standardized", upsample="bilinear"), standardized, off) > 0.1
    assert change(attention(x, raw, upsample="bilinear"), first, off) > 0.03


@pytest.mark.parametrize("size", SIZES)
def test_area_scaled_columns_act_at_every_size(size):
    raw = photo_features(size)
    x = LayerNorm2d(8)(raw).detach()
    off = attention(x, raw, "off")
    unscaled = change(attention(x, raw, "columns"), off, off)
    area = change(attention(x, raw, "columns", column_scale="area"), off, off)
    assert area > 0.5  # the token's share of the q/k norms no longer falls as 1/HW
    if size == 512:
        assert unscaled < 0.05 < area  # the first reading fades on large inputs


def test_aligned_cells_change_the_output_only_where_g_does_not_divide_the_size():
    for size, acts in ((64, False), (66, True)):
        raw = photo_features(size)
        x = LayerNorm2d(8)(raw).detach()
        off = attention(x, raw, "off")
        nearest = attention(x, raw, softmax="standardized")
        aligned = attention(x, raw, softmax="standardized", upsample="aligned")
        assert (change(aligned, nearest, off) > 0.01) == acts


def test_aligned_cells_pool_back_exactly_and_nearest_cells_do_not():
    cells = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    aligned = GlobalSpatialToken(2, "row", TokenOptions(upsample="aligned"))
    nearest = GlobalSpatialToken(2, "row", TokenOptions(upsample="nearest"))
    for n in range(4, 130):
        torch.testing.assert_close(aligned.pool(aligned.upsample(cells, (n, n + 3))), cells)
    assert not torch.allclose(nearest.pool(nearest.upsample(cells, (30, 30))), cells)


def test_aligned_pooling_equals_adaptive_pooling_when_the_grid_divides_and_covers_small_inputs():
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    aligned = GlobalSpatialToken(1, "row", TokenOptions(upsample="aligned"))
    torch.testing.assert_close(aligned.pool(x), F.adaptive_avg_pool2d(x, 4))
    small = torch.randn(1, 2, 3, 2, dtype=torch.float64)  # fewer pixels than cells: no empty cell
    pooled = aligned.pool(small)
    assert pooled.shape == (1, 2, 4, 4) and torch.isfinite(pooled).all()


def test_bilinear_up_pooling_equals_pytorch_bilinear():
    cells = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    token = GlobalSpatialToken(1, "row", TokenOptions(upsample="bilinear"))
    for size in ((5, 9), (64, 64), (101, 37)):
        expected = F.interpolate(cells, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(token.upsample(cells, size), expected)


def test_invalid_token_options_name_the_option():
    with pytest.raises(ValueError, match="token_upsample"):
        TokenOptions(upsample="cubic")
    import exda

    with pytest.raises(exda.errors.UserError, match="token_softmax"):
        exda.create_model("exda_restormer_test", token_softmax="sharp")


def test_checkpoints_record_token_options_and_a_first_reading_one_loads_as_it_was_trained(tmp_path):
    import exda
    from exda.engine.checkpoint import save_checkpoint

    first = exda.create_model("exda_restormer_test", **FIRST_KWARGS)  # as the photo model shipped up to step 1,600
    path = save_checkpoint(tmp_path, "first", model=first, config={}, step=3, metrics={}, train_state=None)
    with safe_open(str(path), "pt") as f:
        assert {k: json.loads(f.metadata()["model_kwargs"])[k] for k in FIRST_KWARGS} == FIRST_KWARGS
    model, info = load_network(path)
    assert token_kwargs(model) == FIRST_KWARGS
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x), first(x), rtol=0, atol=0)

    fresh = exda.create_model("exda_restormer_test", token_softmax="standardized")
    path = save_checkpoint(tmp_path, "last", model=fresh, config={}, step=3, metrics={}, train_state=None)
    reloaded, info = load_network(path)
    assert token_kwargs(reloaded) == token_kwargs(fresh)
    assert info.kwargs["token_softmax"] == "standardized"


def test_the_shipped_photo_model_is_the_plain_twin_at_step_10000():
    shipped = "exda/weights/exda_photo.safetensors"  # docs/model_card.md: why the twin ships
    model, info = load_network(shipped)
    assert info.step == 10000 and info.kwargs["value_transform"] == info.kwargs["global_token"] == "off"
    assert token_kwargs(model) == {}
    torch.manual_seed(0)  # its output, pinned when it shipped (2026-12-07)
    with torch.no_grad():
        y = model(torch.rand(1, 3, 64, 80)).double()
    assert y.mean().item() == pytest.approx(0.494926108882161, abs=1e-6)
    assert y.std().item() == pytest.approx(0.08167990247463733, abs=1e-6)


def test_a_checkpoint_without_token_options_is_refused_until_the_script_records_them(tmp_path):
    import exda
    from exda.engine.checkpoint import save_checkpoint
    from exda.inference.checkpoint_format import file_digest

    first = exda.create_model("exda_restormer_test", **FIRST_KWARGS)
    path = save_checkpoint(tmp_path, "last", model=first, config={"model": {"kwargs": {}}}, step=3, metrics={},
                           train_state=None)
    with safe_open(str(path), "pt") as f:  # as written before checkpoints recorded the options
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    metadata["model_kwargs"] = "{}"
    path.write_bytes(safetensors_bytes(tensors, metadata=metadata))
    record = json.loads(path.with_suffix(".json").read_text())
    record["files"][".safetensors"] = file_digest(path)
    path.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(exda.errors.UserError, match=r"record_token_options\.py") as err:
        load_network(path)
    assert "\n" not in str(err.value)

    spec = importlib.util.spec_from_file_location("record_token_options", REPO / "scripts" / "record_token_options.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.FIRST_READING == FIRST_KWARGS
    assert script.record(path).startswith("recorded")
    reloaded, info = load_network(path)  # its checksum in the JSON follows the new file
    assert token_kwargs(reloaded) == FIRST_KWARGS and info.config["model"]["kwargs"] == FIRST_KWARGS
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        assert torch.equal(reloaded(x), first(x))
    assert script.record(path).startswith("nothing")
