"""DPS and SaFaRI on a latent prior: the pixel methods with the fidelity through the decoder.

Latent DPS (the "LDM-DPS" baseline of Rout et al., NeurIPS 2023, arXiv 2307.00619, and of Song et
al., ICLR 2024, arXiv 2307.08123) is DPS (Chung et al., ICLR 2023, Algorithm 1) on ``z`` with
``r = y − A(D(ẑ0))``, the gradient taken w.r.t. ``z_t`` through the network *and* the decoder
(LituRout/PSLD ``stable-diffusion/ldm/models/diffusion/psld.py::p_sample_ddim`` with γ = 0:
``meas_error = ‖A(D(ẑ0)) − y‖``, ``z_{t−1} = z'_{t−1} − ∇_{z_t} ω·meas_error``). Latent SaFaRI
is SaFaRI's ψ-fidelity on the same decoded estimate. Neither copies its pixel class: the loop
runs the pixel class's step on latents with ``A ∘ D`` (:mod:`lit_restore.samplers.latent`).
"""

from __future__ import annotations

from lit_restore.samplers.dps import DPS
from lit_restore.samplers.latent import LatentSampler
from lit_restore.samplers.safari import SaFaRI


class LatentDPS(LatentSampler, DPS):
    """:class:`DPS` on a latent prior (arguments as DPS; latents are not clamped)."""

    name = "latent_dps"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clip_denoised = False


class LatentSaFaRI(LatentSampler, SaFaRI):
    """:class:`SaFaRI` on a latent prior (arguments as SaFaRI; latents are not clamped)."""

    name = "latent_safari"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clip_denoised = False
