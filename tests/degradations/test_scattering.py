"""Physics checks of the participating-media degradations: underwater (revised formation model) and haze."""

from __future__ import annotations

import torch

from exda.degradations import DegradationSampler, get_degradation
from exda.degradations.ops import depth_proxy
from exda.degradations.scattering import JERLOV_TYPES


def white_with_depth(h: int = 33, w: int = 29) -> tuple[torch.Tensor, torch.Tensor]:
    """A white card seen from near (depth 0, left) to far (depth 1, right)."""
    depth = torch.linspace(0.0, 1.0, w).expand(h, w).clone()
    return torch.full((1, 3, h, w), 0.9), depth


def test_underwater_colour_loss_grows_with_distance() -> None:
    """The scene's own light (white card minus black card: the backscatter cancels) keeps less red the
    farther it is, in every water type; and the far end has lost red to the water."""
    white, depth = white_with_depth()
    under = get_degradation("underwater")
    for seed in range(6):
        params = under.sample_params(white, torch.Generator().manual_seed(seed))
        y = under.apply(white, **params, depth=depth)
        signal = y - under.apply(torch.zeros_like(white), **params, depth=depth)
        red_share = signal[0, 0].mean(0) / signal[0, 1:].mean((0, 1))
        assert (red_share[1:] < red_share[:-1]).all(), params
        far = y[0, :, :, -1].mean(-1)
        assert far[0] < max(far[1], far[2])
        assert params["water_type"] in JERLOV_TYPES


def test_underwater_zero_range_and_depth_is_the_identity_and_far_is_the_veil() -> None:
    x, depth = white_with_depth()
    under = get_degradation("underwater")
    common = {"water_type": "I", "attenuation": [0.3, 0.06, 0.03], "backscatter_attenuation": [0.25, 0.05, 0.02],
              "veil": 0.6}
    same = under.apply(x, **common, near=0.0, far=0.0, water_depth=0.0, depth=depth)
    assert torch.allclose(same, x)
    far = under.apply(x, **common, near=500.0, far=500.0, water_depth=0.0, depth=depth)
    assert torch.allclose(far, torch.full_like(x, 0.6), atol=1e-4)  # only backscatter is left
    assert torch.equal(DegradationSampler("underwater", seed=3, strength=0.0)(x)[0], x)


def test_depth_proxy_spans_near_to_far() -> None:
    x = torch.rand(2, 3, 37, 31, generator=torch.Generator().manual_seed(0))
    d = depth_proxy(x)
    assert d.shape == (2, 1, 37, 31)
    assert torch.allclose(d.amin(dim=(1, 2, 3)), torch.zeros(2))
    assert torch.allclose(d.amax(dim=(1, 2, 3)), torch.ones(2))
    assert d[:, :, :5].mean() > d[:, :, -5:].mean() + 0.5  # top rows far, bottom rows near


def test_haze_near_and_far_differ_visibly() -> None:
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 0.5
    y, _ = DegradationSampler("haze", seed=0)(x)
    change = (y - x).abs().mean(dim=(0, 1, 3))
    assert change[:8].mean() > 3 * change[-8:].mean()  # the far (top) rows are much hazier than the near


def test_haze_normalises_a_metric_depth_map() -> None:
    # beta assumes relative depth in [0, 1]; a map in metres (here 2..80 m) must not give pure airlight.
    x, relative = white_with_depth()
    x = x * torch.linspace(0.2, 1.0, x.shape[-1])  # some structure to keep
    haze = get_degradation("haze")
    metres = 2.0 + 78.0 * relative
    y = haze.apply(x, beta=1.2, airlight=0.8, depth=metres)
    assert torch.allclose(y, haze.apply(x, beta=1.2, airlight=0.8, depth=metres / 80.0), atol=1e-6)
    assert float((y - 0.8).abs().amax()) > 0.1  # the scene still shows through
    t = torch.exp(-1.2 * relative)  # a map already in [0, 1] is used as it is
    assert torch.allclose(haze.apply(x, beta=1.2, airlight=0.8, depth=relative), x * t + 0.8 * (1 - t), atol=1e-6)
