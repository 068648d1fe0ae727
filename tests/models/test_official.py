"""Published checkpoints: official names and shapes map exactly onto ours; every file format loads.

The key lists in tests/assets/official_keys/*.json were written once from the official code by
benchmarks/official_equivalence.py (``--keys-out``); the output equivalence itself is that benchmark's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import exda
from exda.cli import main as cli_main
from exda.errors import UserError
from exda.inference.loader import load_network
from exda.models.official import OFFICIAL_MAPPINGS, infer_arch

KEYS = Path(__file__).resolve().parents[1] / "assets" / "official_keys"
exda.list_models()  # imports every model family, which registers its official mappings


def official_keys(name: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads((KEYS / f"{name}.json").read_text())["keys"].items()}


def meta_state(keys: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}


@pytest.mark.parametrize("arch", ["restormer", "promptir"])
def test_official_keys_map_onto_ours_exactly(arch):
    keys = official_keys(arch)
    mapped = OFFICIAL_MAPPINGS[arch](meta_state(keys))
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in exda.create_model(arch).state_dict().items()}
    assert sorted(mapped) == sorted(ours)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == ours
    assert len(mapped) == len(keys)  # one-to-one: nothing merged or dropped


@pytest.mark.parametrize("arch", ["restormer", "promptir"])
def test_arch_is_inferred_from_official_keys(arch):
    assert infer_arch(meta_state(official_keys(arch))) == arch


def test_restormer_biasfree_grayscale_config_is_read_from_the_keys():
    keys = {k: (s if k != "patch_embed.proj.weight" else (48, 1, 3, 3)) for k, s in official_keys("restormer").items()
            if not k.endswith("norm1.body.bias") and not k.endswith("norm2.body.bias")}
    keys["output.weight"] = (1, 96, 3, 3)
    assert infer_arch(meta_state(keys)) == "restormer"


def tiny_official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """restormer_test's weights under the official names (the inverse of the mapping, by construction)."""
    torch.manual_seed(seed)
    ours = exda.create_model("restormer_test").state_dict()
    inverse = {}
    probe = {}
    for key in ours:  # official name = ours with the official level names and LayerNorm body
        official = key
        for a, b in (("encoders.0.", "encoder_level1."), ("encoders.1.", "encoder_level2."),
                     ("encoders.2.", "encoder_level3."), ("downs.0.", "down1_2."), ("downs.1.", "down2_3."),
                     ("downs.2.", "down3_4."), ("ups.0.", "up2_1."), ("ups.1.", "up3_2."), ("ups.2.", "up4_3."),
                     ("reduces.1.", "reduce_chan_level2."), ("reduces.2.", "reduce_chan_level3."),
                     ("decoders.0.", "decoder_level1."), ("decoders.1.", "decoder_level2."),
                     ("decoders.2.", "decoder_level3.")):
            if official.startswith(a):
                official = b + official[len(a):]
        official = official.replace(".norm1.", ".norm1.body.").replace(".norm2.", ".norm2.body.")
        inverse[official] = ours[key] + 0.01 * torch.randn_like(ours[key])
        probe[official] = key
    assert OFFICIAL_MAPPINGS["restormer_test"](dict.fromkeys(probe, torch.zeros(0))).keys() == ours.keys()
    return inverse


@pytest.mark.parametrize("wrap", ["basicsr", "basicsr_ema", "lightning", "plain", "ddp"])
def test_every_container_format_loads(tmp_path, wrap):
    state = tiny_official_state()
    other = {k: v + 1 for k, v in state.items()}
    payload = {
        "basicsr": {"params": state},
        "basicsr_ema": {"params": other, "params_ema": state},  # EMA preferred
        "lightning": {"state_dict": {f"net.{k}": v for k, v in state.items()}, "epoch": 3},
        "plain": state,
        "ddp": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "official.pth"
    torch.save(payload, path)
    model = exda.load_pretrained(path, arch="restormer_test")
    assert model.model_name == "restormer_test" and not model.training
    mapped = OFFICIAL_MAPPINGS["restormer_test"](state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, mapped[key]), key
    x = torch.rand(1, 3, 19, 23)
    assert model(x).shape == x.shape


def test_mismatch_is_one_line_naming_keys(tmp_path):
    state = tiny_official_state()
    state.pop("output.weight")
    state["extra.weight"] = torch.zeros(2)
    state["patch_embed.proj.weight"] = torch.zeros(8, 3, 5, 5)
    path = tmp_path / "bad.pth"
    torch.save({"params": state}, path)
    with pytest.raises(UserError) as err:
        exda.load_pretrained(path, arch="restormer_test")
    text = str(err.value)
    assert "\n" not in text
    assert "output.weight" in text and "extra.weight" in text and "patch_embed.proj.weight" in text


def test_ambiguous_or_unknown_weights_ask_for_arch(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, path)
    with pytest.raises(UserError, match="--arch"):
        exda.load_pretrained(path)


def test_pickled_code_is_refused_with_one_line(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"params": tiny_official_state(), "options": Path("x")}, path)  # a Path needs code to unpickle
    with pytest.raises(UserError, match="weights_only") as err:
        exda.load_pretrained(path, arch="restormer_test")
    assert "\n" not in str(err.value)


def test_plain_safetensors_with_our_names_loads(tmp_path):
    net = exda.create_model("restormer_test")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded = exda.load_pretrained(path, arch="restormer_test")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values(),
                                                   strict=True))


def test_convert_then_restore_and_checkpoint_helper(tmp_path):
    src = tmp_path / "official.pth"
    torch.save({"params": tiny_official_state()}, src)
    out = tmp_path / "converted.safetensors"
    assert cli_main(["convert", str(src), str(out), "--arch", "restormer_test"]) == 0
    converted, info = load_network(out)
    direct = exda.load_pretrained(src, arch="restormer_test")
    x = torch.rand(1, 3, 17, 21)
    with torch.no_grad():
        assert torch.equal(converted(x), direct(x))
    assert info.arch == "restormer_test"
    # the helper behind `exda restore/eval --checkpoint`: exda checkpoints and foreign files alike
    for path in (out, src):
        model, info = load_network(path, arch="restormer_test")
        with torch.no_grad():
            assert torch.equal(model(x), direct(x))
    assert cli_main(["convert", str(tmp_path / "missing.pth"), str(out)]) == 2


def test_restore_reads_an_official_checkpoint(tmp_path):
    from PIL import Image

    src = tmp_path / "official.pth"
    torch.save({"state_dict": {f"net.{k}": v for k, v in tiny_official_state().items()}}, src)
    image = tmp_path / "in.png"
    Image.new("RGB", (21, 17), (120, 60, 30)).save(image)
    out = tmp_path / "out.png"
    assert cli_main(["restore", str(image), "-o", str(out), "--checkpoint", str(src), "--arch", "restormer_test"]) == 0
    assert Image.open(out).size == (21, 17)


def test_eval_reads_an_official_checkpoint_under_moce_ir_ssim(tmp_path):
    import numpy as np
    from PIL import Image

    from exda.metrics import SSIM_PROTOCOLS, ssim

    src = tmp_path / "official.pth"
    torch.save({"params": tiny_official_state()}, src)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (23, 29, 3), dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    for folder, pixels in (("input", noisy), ("target", clean)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "data" / folder / "a.png")
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(src), "--arch", "restormer_test", "--data", str(tmp_path / "data"),
            "--ssim-protocol", "moce_ir", "--out", str(out)]
    assert cli_main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert "restormer_test" in json.dumps(record)
    as_tensor = [torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255 for a in (noisy, clean)]
    expected = float(ssim(*as_tensor, **SSIM_PROTOCOLS["moce_ir"])[0])
    assert expected != pytest.approx(float(ssim(*as_tensor, **SSIM_PROTOCOLS["basicsr"])[0]), abs=1e-6)
    assert f"{expected:.6f}" in (out / "results.csv").read_text()
