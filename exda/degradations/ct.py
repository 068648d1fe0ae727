"""Low-dose CT: project, count photons with Poisson noise, log back and reconstruct by filtered back-projection."""

from __future__ import annotations

import numpy as np
import torch
from skimage.transform import iradon, radon
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import draw_seed, make_generator, uniform
from exda.degradations.registry import register

# Pixel values are read as the AMIR normalisation v = (HU + 1024) / 4095, so the linear attenuation is
# mu = mu_water * (1 + HU / 1000) ~= mu_water * 4.095 v (air -> 0, water -> mu_water).
MU_WATER_PER_MM = 0.0193  # water at about 70 keV
MU_PER_UNIT = MU_WATER_PER_MM * 4.095
FIELD_OF_VIEW_MM = 350.0  # the longer image side spans a typical body field of view


class LowDoseCT(Degradation):
    """Low-dose CT simulated in the projection domain.

    Line integrals p = Radon(mu) over ``views`` angles in [0, 180); detected counts N ~ Poisson(I0 e^-p)
    with the incident photons per ray I0 = ``dose`` (N clipped to >= 1, photon starvation); the noisy
    p' = log(I0 / N) is reconstructed by ramp-filtered back-projection (scikit-image) and clipped to
    [0, 1]. Runs on CPU (scikit-image): about 1 s per 256 x 256 channel on one core. Full dose is about
    1e6 photons per ray here; I0 is 1e4..1e5 at strength 1 (``strength`` scales the log-dose reduction).
    """

    def __init__(self) -> None:
        super().__init__("ct", "low-dose CT: Radon transform, Poisson counts at dose I0, filtered back-projection",
                         task="low_dose_ct", stage=Stage.SENSOR)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        size = max(x.shape[-2:])
        return {
            "dose": 10.0 ** (6.0 - strength * uniform(generator, 1.0, 2.0)),
            "views": int(min(360, max(90, size))),
            "seed": draw_seed(generator),
        }

    def forward(self, x: Tensor, *, dose: float, views: int, seed: int) -> Tensor:
        b, c, h, w = x.shape
        n = max(h, w)
        top, left = (n - h) // 2, (n - w) // 2
        per_pixel = MU_PER_UNIT * FIELD_OF_VIEW_MM / n  # line integral of one pixel of value 1
        theta = np.linspace(0.0, 180.0, int(views), endpoint=False)
        generator = make_generator(seed)
        images = x.detach().cpu().double().numpy().reshape(b * c, h, w)
        out = np.empty_like(images)
        for i, image in enumerate(images):
            square = np.zeros((n, n))
            square[top:top + h, left:left + w] = image
            sinogram = radon(square, theta, circle=False) * per_pixel
            expected = torch.from_numpy(dose * np.exp(-sinogram))
            counts = torch.poisson(expected, generator=generator).clamp_min(1.0).numpy()
            noisy = np.log(dose / counts) / per_pixel
            recon = iradon(noisy, theta, output_size=n, filter_name="ramp", circle=False)
            out[i] = recon[top:top + h, left:left + w]
        return torch.from_numpy(out).reshape(b, c, h, w).to(x.device, torch.float32)


register(LowDoseCT())
