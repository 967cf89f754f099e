"""The DPS paper's nonlinear blur: a sharp image blurred by a learned blur network.

Chung et al., "Diffusion Posterior Sampling for General Noisy Inverse Problems" (ICLR 2023) §4;
DPS2022/diffusion-posterior-sampling ``guided_diffusion/measurements.py::NonlinearBlurOperator``:
the GOPRO blur model of Tran et al. (CVPR 2021, :class:`lit_restore.nn.kernel_wizard.KernelWizard`)
applied as ``y = clip(2·G([x+1]/2, k) − 1, −1, 1)`` with a random kernel code
``k ~ 1.2·N(0, I)`` of shape ``[512, 2, 2]`` (256-px images).

**One code per image.** The official operator draws a new ``k`` at *every* call, so the
measurement and each guidance step see different blurs (DPS issue #7). Here ``k`` is a per-image
parameter (:meth:`NonlinearBlur.sample_params`, from the image's ``(seed, index)`` generator),
drawn once and shared by the measurement and the guidance.

**Weights.** ``checkpoint`` is a path or the registry name ``bkse-gopro-wvae``
(``GOPRO_wVAE.pth`` from the bkse README; :mod:`lit_restore.weights`), loaded strictly; the file
holds the whole ``KernelWizard`` (both F and G). ``None`` leaves random weights (tests).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lit_restore.checkpoints import extract_state_dict, load_state_dict_strict, read_checkpoint
from lit_restore.nn.blocks import freeze
from lit_restore.nn.kernel_wizard import KernelWizard
from lit_restore.operators.base import Operator
from lit_restore.weights import resolve


class NonlinearBlur(Operator):
    """``y = clip(2·G((x+1)/2, k) − 1, −1, 1)`` with a per-image kernel code ``k`` (module
    docstring).

    Args:
        checkpoint: weights file or ``bkse-gopro-wvae``; ``None`` = random weights.
        code_scale: the code's standard deviation (official 1.2).
        nf, front_RBs, back_RBs, kernel_dim, extractor_blocks: the network's layout
            (:class:`KernelWizard`; defaults = the released GOPRO model).
    """

    def __init__(
        self,
        checkpoint: str | None = "bkse-gopro-wvae",
        code_scale: float = 1.2,
        nf: int = 64,
        front_RBs: int = 10,
        back_RBs: int = 20,
        kernel_dim: int = 512,
        extractor_blocks: int = 4,
    ) -> None:
        super().__init__()
        self.code_scale = float(code_scale)
        self.net = KernelWizard(nf, front_RBs, back_RBs, kernel_dim, 3, extractor_blocks)
        if checkpoint is not None:
            path = resolve(checkpoint, option="checkpoint")
            obj = read_checkpoint(path)
            source = f"checkpoint {str(path)!r}"
            state = extract_state_dict(obj if isinstance(obj, Mapping) else {}, None, source=source)
            load_state_dict_strict(self.net, state, source)
        freeze(self.net)
        #: the per-image kernel codes ``[B, kernel_dim, H/128, W/128]`` (set by :meth:`bind`)
        self.code: Tensor | None = None

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        m = KernelWizard.size_multiple
        if shape[0] != 3 or shape[1] % m or shape[2] % m:
            raise ValueError(
                f"NonlinearBlur acts on RGB images whose sides are multiples of {m} (the blur "
                f"network's five ÷2 levels after a ÷4 encoder), got {shape}; set the data's "
                f"crop_size to a multiple of {m} (DPS: 256)"
            )

    def param_names(self) -> set[str]:
        return {"code"}

    def sample_params(self, generator: torch.Generator, image_shape: tuple[int, ...]) -> dict:
        self.check_image_shape(tuple(image_shape))  # type: ignore[arg-type]
        shape = self.net.code_shape(image_shape[-2], image_shape[-1])
        return {"code": torch.randn(shape, generator=generator) * self.code_scale}

    def A(self, x: Tensor) -> Tensor:
        if self.code is None:
            raise RuntimeError(
                "NonlinearBlur has no kernel codes: bind it to the batch's parameters "
                "(operator.bind(batch['params'])), as the data pipeline and the modules do"
            )
        code = self.code.to(device=x.device, dtype=x.dtype)
        blurred = self.net.adapt_kernel((x + 1) / 2, code)
        return (blurred * 2 - 1).clamp(-1, 1)

    def image_shape_for(self, y: Tensor) -> tuple[int, ...]:
        return tuple(y.shape)

    def extra_repr(self) -> str:
        return f"code_scale={self.code_scale}"
