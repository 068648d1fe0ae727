"""Contract tests over every registered model, exact reference counts, and the ExDA primitives."""

from __future__ import annotations

import pytest
import torch

import exda
from exda.layers import (
    GLOBAL_TOKENS,
    VALUE_TRANSFORMS,
    GlobalSpatialToken,
    NonlinearValue,
    TokenOptions,
    TransposedAttention,
)
from exda.models import ModelTraits, model_traits, registry
from exda.models.profile import count_parameters, profile_model
from exda.models.restormer import PROMPTS

TEST_MODELS = [name for name in exda.list_models() if name.endswith("_test")]


def test_registry_lists_every_family_and_size():
    names = exda.list_models()
    for family in ("restormer", "promptir", "exda_restormer", "exda_promptir"):
        for suffix in ("", "_small", "_tiny", "_test"):
            assert family + suffix in names


def test_duplicate_registration_raises():
    from exda.models.registry import register_model

    def restormer():  # same name as a registered factory
        raise AssertionError

    with pytest.raises(ValueError, match="already registered"):
        register_model(restormer)


def test_unknown_model_is_a_user_error():
    with pytest.raises(exda.errors.UserError, match="unknown model"):
        exda.create_model("no_such_model")


def test_exact_reference_parameter_counts():
    with torch.device("meta"):
        assert count_parameters(exda.create_model("restormer")) == 26_126_644
        assert count_parameters(exda.create_model("promptir")) == 35_592_263


@pytest.mark.slow
@pytest.mark.parametrize("family", ["restormer", "promptir"])
def test_exda_overhead_within_bounds(family):
    kwargs = {"prompts": PROMPTS["base"]} if family == "promptir" else {}
    base_params, base_flops = profile_model(family, **kwargs)
    params, flops = profile_model("exda_" + family)
    assert 0 < params / base_params - 1 <= 0.02
    assert 0 < flops / base_flops - 1 <= 0.05


@pytest.mark.parametrize("name", TEST_MODELS)
def test_model_contract(name):
    torch.manual_seed(0)
    model = exda.create_model(name)
    traits = model_traits(model)
    x = torch.rand(1, traits.in_channels, 37, 31)
    if traits.auxiliary_loss:  # a training loss of its own (AirNet's InfoNCE, AMIR's and MoCE-IR's balance)
        y, auxiliary = model.restore_with_auxiliary_loss(x)
        assert auxiliary.ndim == 0 and torch.isfinite(auxiliary)
    else:
        y, auxiliary = model(x), 0
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and torch.isfinite(y).all()
    (y.abs().mean() + auxiliary).backward()
    live = {n: p for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith("unused_published_convs")}  # not a frozen momentum encoder
    missing = [n for n, p in live.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        assert isinstance(model(x), torch.Tensor)


def test_every_model_has_its_family_traits_and_carries_them():
    families: dict[str, set[ModelTraits]] = {}
    for name in exda.list_models():
        families.setdefault(registry._MODELS[name].__module__, set()).add(model_traits(name))
    # one set of traits a family, so the *_test variants the contract tests use stand for every size
    assert all(len(traits) == 1 for traits in families.values()), families
    for name in TEST_MODELS:
        model = exda.create_model(name)
        assert model_traits(model) == model_traits(name)
        assert model_traits(model).auxiliary_loss == hasattr(model, "restore_with_auxiliary_loss")
        assert model_traits(exda.create_model(name, in_channels=1)).in_channels == 1
    assert model_traits("amir").in_channels == 1 and not model_traits("histoformer_test").bf16_safe
    assert [name for name in TEST_MODELS if not model_traits(name).onnx_exportable] == [
        "adair_test", "exda_adair_test", "exda_histoformer_test", "exda_moce_ir_test", "histoformer_test",
        "moce_ir_test"]
    with pytest.raises(exda.errors.UserError, match="unknown model"):
        model_traits("no_such_model")
    with pytest.raises(TypeError, match="not built by exda.create_model"):
        model_traits(torch.nn.Conv2d(3, 3, 1))


def test_a_loaded_checkpoint_carries_its_traits(tmp_path):
    from exda.engine.checkpoint import save_checkpoint
    from exda.inference.loader import load_network

    model = exda.create_model("amir_test", in_channels=3)
    path = save_checkpoint(tmp_path, "last", model=model, config={}, step=1, metrics={}, train_state=None)
    loaded, _ = load_network(path)
    assert model_traits(loaded) == model_traits(model) == ModelTraits(in_channels=3, auxiliary_loss=True)


@pytest.mark.parametrize("name", TEST_MODELS)
def test_grayscale_input(name):
    model = exda.create_model(name, in_channels=1).eval()
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_only_promptir_keeps_never_called_convolutions():
    with torch.device("meta"):
        dead = exda.create_model("promptir").unused_published_convs
    assert sum(p.numel() for p in dead.parameters()) == 215_296
    assert not hasattr(exda.create_model("exda_promptir_test"), "unused_published_convs")


def test_global_token_adds_no_parameters():
    for kind in GLOBAL_TOKENS:
        assert count_parameters(GlobalSpatialToken(heads=2, kind="row" if kind == "off" else kind)) == 0
    with_token = exda.create_model("restormer_test", global_token="row")
    assert count_parameters(with_token) == count_parameters(exda.create_model("restormer_test"))


def _attention_output(**options) -> torch.Tensor:
    torch.manual_seed(0)
    attn = TransposedAttention(dim=8, heads=2, **options)
    torch.manual_seed(1)
    return attn(torch.randn(1, 8, 11, 13))


def test_every_primitive_option_changes_outputs():
    outputs = {("off", "off"): _attention_output()}
    for vt in VALUE_TRANSFORMS[1:]:
        outputs[(vt, "off")] = _attention_output(value_transform=vt)
    for gt in GLOBAL_TOKENS[1:]:
        outputs[("off", gt)] = _attention_output(global_token=gt)
    keys = list(outputs)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not torch.allclose(outputs[a], outputs[b]), f"{a} and {b} give the same output"


def test_nonlinear_value_is_residual_and_nonlinear():
    torch.manual_seed(0)
    nv = NonlinearValue(channels=4, heads=2, kind="dwconv_gelu")
    v = torch.randn(1, 4, 5, 5)
    assert not torch.allclose(nv(2 * v), 2 * nv(v))  # not linear any more
    assert torch.equal(NonlinearValue(4, 2, "off")(v), v)


def test_token_weights_are_a_distribution_over_cells():
    for upsample in ("nearest", "aligned", "bilinear"):
        for softmax in ("raw", "standardized"):
            gst = GlobalSpatialToken(heads=2, kind="row", options=TokenOptions(4, upsample, softmax))
            w = gst.cell_weights(torch.randn(2, 8, 37, 31))
            assert w.shape == (2, 8, 16)
            assert torch.allclose(w.sum(-1), torch.ones(2, 8))


def test_degradation_descriptor_is_explicit():
    torch.manual_seed(0)
    model = exda.create_model("exda_restormer_test").eval()
    clean = torch.rand(1, 3, 40, 36)
    hazy = 0.5 * clean + 0.5 * torch.linspace(0, 1, 40).view(1, 1, 40, 1)  # a vertical veil
    d = model.degradation_descriptor(torch.cat([clean, hazy]))
    grid_cells = 16  # default 4 x 4 token grid, 8C = 64 latent channels for the test size
    assert d.shape == (2, 64 * grid_cells)
    per_channel = d.view(2, 64, grid_cells)
    torch.testing.assert_close(per_channel.sum(-1), torch.ones(2, 64))  # a distribution per channel
    assert not torch.allclose(d[0], d[1])  # it sees the difference between the two inputs
    with pytest.raises(ValueError, match="no global spatial token"):
        exda.create_model("restormer_test").degradation_descriptor(torch.rand(1, 3, 16, 16))


def test_invalid_options_are_user_errors():
    for bad in ({"value_transform": "sigmoid"}, {"global_token": "tokens"}, {"in_channels": 4}, {"colour": 1}):
        with pytest.raises(exda.errors.UserError, match="model restormer_test"):
            exda.create_model("restormer_test", **bad)


def test_yaml_off_means_off():
    # YAML 1.1 reads an unquoted `off` as False; it must switch the primitive off, not fail.
    model = exda.create_model("exda_restormer_test", value_transform=False, global_token=False)
    with torch.device("meta"):
        assert count_parameters(model) == count_parameters(exda.create_model("restormer_test"))


TOKEN_OPTION_CASES = [
    ("row", TokenOptions()),
    ("columns", TokenOptions()),
    ("row", TokenOptions(upsample="nearest", softmax="raw", column_scale="none", input="raw")),  # first reading
    ("row", TokenOptions(upsample="aligned", softmax="standardized", input="normalized")),
    ("row", TokenOptions(grid=3, upsample="bilinear")),
    ("columns", TokenOptions(column_scale="area", softmax="standardized")),
]


@pytest.mark.parametrize(("kind", "options"), TOKEN_OPTION_CASES)
def test_fast_token_path_equals_concatenation_reference(kind, options):
    torch.manual_seed(0)
    fast = TransposedAttention(16, 2, value_transform="dwconv_gelu", global_token=kind, token=options).double()
    reference = TransposedAttention(16, 2, value_transform="dwconv_gelu", global_token=kind, token=options,
                                    path="reference")
    reference = reference.double()
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, 16, 19, 23, dtype=torch.float64, requires_grad=True)
    outputs = [m(x, x_in=2 * x) for m in (fast, reference)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-12)
    modules = (fast, reference)
    grads = [torch.autograd.grad(y.square().sum(), [x, *m.parameters()]) for y, m in zip(outputs, modules, strict=True)]
    for g_fast, g_ref in zip(*grads, strict=True):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-10)


def test_attend_equals_literal_normalised_attention():
    """The cheap formulation (normalise the small C/h x C/h map) equals Restormer's F.normalize on q and k."""
    import torch.nn.functional as F

    from exda.layers.attention import attend

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 37 * 31, dtype=torch.float64, requires_grad=True) for _ in range(3))
    temperature = torch.rand(3, 1, 1, dtype=torch.float64) + 0.5
    literal = ((F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * temperature).softmax(-1) @ v
    fast = attend(q, k, v, temperature)
    torch.testing.assert_close(fast, literal, rtol=1e-12, atol=1e-13)
    g_fast = torch.autograd.grad(fast.square().sum(), (q, k, v))
    g_literal = torch.autograd.grad(literal.square().sum(), (q, k, v))
    for a, b in zip(g_fast, g_literal, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)



def test_norms_of_a_channels_last_view_without_autograd_equal_the_reduction():
    """Inference takes the squared norms of a strided (channels-last) per-head view from the diagonal of
    t t^T; they equal the reduction's, and the attention built on them equals the concatenation reference."""
    from exda.layers.attention import squared_norm

    torch.manual_seed(0)
    nhwc = torch.randn(2, 12, 19, 23, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    view = nhwc[:, 4:8].reshape(2, 2, 2, 19 * 23)  # a chunk of a qkv map, per head: the pixel axis strided
    assert view.stride(-1) != 1
    with torch.inference_mode():
        gram = squared_norm(view)
    expected = view.contiguous().square().sum(dim=-1, keepdim=True)
    torch.testing.assert_close(gram, expected, rtol=1e-13, atol=1e-13)
    for kind in ("row", "columns"):
        fast = TransposedAttention(12, 2, value_transform="dwconv_gelu", global_token=kind).double()
        reference = TransposedAttention(12, 2, value_transform="dwconv_gelu", global_token=kind, path="reference")
        reference.double().load_state_dict(fast.state_dict())
        with torch.inference_mode():
            y_fast = fast.to(memory_format=torch.channels_last)(nhwc)
            y_reference = reference(nhwc.contiguous())
        torch.testing.assert_close(y_fast, y_reference, rtol=1e-10, atol=1e-12)

def test_patch_embedding_is_bias_free_whatever_bias_says():
    # The official Restormer / PromptIR build OverlapPatchEmbed without passing `bias`: always bias-free.
    for name in ("restormer_test", "promptir_test"):
        state = exda.create_model(name, bias=True).state_dict()
        assert "patch_embed.proj.bias" not in state
        assert "output.bias" in state  # `bias` still reaches the other convolutions
