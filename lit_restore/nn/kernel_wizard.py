"""The blur-kernel network of Tran et al., "Explore Image Deblurring via Encoded Blur Kernel Space"
(CVPR 2021), in the published layout of VinAIResearch/blur-kernel-space-exploring
``models/kernel_encoding/kernel_wizard.py`` (``KernelWizard``, its ``KernelExtractor`` F and
``KernelAdapter`` G; blocks from ``models/backbones/resnet.py`` and ``unet_parts.py``), with the
released GOPRO model's options (``options/generate_blur/default.yml``: ``nf`` 64, ``front_RBs``
10, ``back_RBs`` 20, ``kernel_dim`` 512, VAE, no normalisation, reflect padding).

:meth:`KernelWizard.adapt_kernel` (official ``adaptKernel``) blurs a sharp image with an encoded
kernel ``k`` (``[B, kernel_dim, H/128, W/128]``): features (÷4) → the U-Net G with ``k``
concatenated at its innermost level → a pixel-shuffle reconstruction → + the input. The DPS
paper's nonlinear deblurring measures images with it
(:class:`lit_restore.operators.nonlinear_blur.NonlinearBlur`).

Faithful details that change numbers:

* the down path of every inner U-Net block starts with an *in-place* ``LeakyReLU(0.2)`` on the
  block's input, so its skip connection carries ``LeakyReLU(x)``, not ``x``; written out here;
* with ``norm: none`` the U-Net and extractor convolutions have no bias (the official
  ``use_bias = norm_layer == InstanceNorm2d``), except the outermost transposed convolution;
* :class:`KernelExtractor` F is unused by ``adaptKernel`` but is part of the checkpoint, so it is
  built (strict loading).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))`` (official ``ResidualBlock_noBN``)."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResnetBlock(nn.Module):
    """``x + [pad, conv, ReLU, pad, conv](x)`` with reflect padding, no norm, no bias (official
    ``ResnetBlock`` with ``norm: none``; ``nn.Identity`` keeps the norm layers' indices)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.Identity(),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.Identity(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class KernelExtractor(nn.Module):
    """F: (sharp, blurred) features → kernel code mean and log-variance (official layout)."""

    def __init__(self, nf: int, kernel_dim: int, n_blocks: int = 4) -> None:
        super().__init__()
        self.kernel_dim = kernel_dim
        out = kernel_dim * 2  # VAE: mean and log-variance
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(nf * 2, nf, 7, bias=False),
            nn.Identity(),
            nn.ReLU(True),
        ]
        for i in range(5):
            mult = 2**i
            layers += [
                nn.Conv2d(min(nf * mult, out), min(nf * mult * 2, out), 3, 2, 1, bias=False),
                nn.Identity(),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(out) for _ in range(n_blocks)]
        self.model = nn.Sequential(*layers)

    def forward(self, sharp: Tensor, blur: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(torch.cat((sharp, blur), 1))
        return out[:, : self.kernel_dim], out[:, self.kernel_dim :]


class UnetSkipBlock(nn.Module):
    """One level of the U-Net G (official ``UnetSkipConnectionBlock`` with ``norm: none``)."""

    def __init__(
        self,
        outer: int,
        inner: int,
        input_nc: int | None = None,
        submodule: UnetSkipBlock | None = None,
        outermost: bool = False,
        innermost: bool = False,
    ) -> None:
        super().__init__()
        self.outermost, self.innermost = outermost, innermost
        input_nc = outer if input_nc is None else input_nc
        down = nn.Conv2d(input_nc, inner, 4, 2, 1, bias=False)
        if outermost:
            self.down = nn.Sequential(down)
            self.submodule = submodule
            self.up = nn.Sequential(
                nn.ReLU(), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()
            )
        elif innermost:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), down)
            self.up = nn.Sequential(
                nn.ReLU(), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.Identity()
            )
        else:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), down, nn.Identity())
            self.submodule = submodule
            self.up = nn.Sequential(
                nn.ReLU(), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.Identity()
            )

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        if self.outermost:
            return self.up(self.submodule(self.down(x), code))
        # official: the in-place LeakyReLU of self.down rewrites x, which the skip then carries
        skip = F.leaky_relu(x, 0.2)
        if self.innermost:
            inner = torch.cat((self.down(x), code), 1)
        else:
            inner = self.submodule(self.down(x), code)
        return torch.cat((self.up(inner), skip), 1)


class KernelAdapter(nn.Module):
    """G: a 5-level U-Net on image features with the kernel code at its innermost level."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        block = UnetSkipBlock(nf * 8, nf * 8, innermost=True)
        block = UnetSkipBlock(nf * 4, nf * 8, submodule=block)
        block = UnetSkipBlock(nf * 2, nf * 4, submodule=block)
        block = UnetSkipBlock(nf, nf * 2, submodule=block)
        self.model = UnetSkipBlock(nf, nf, input_nc=nf, submodule=block, outermost=True)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        return self.model(x, code)


class KernelWizard(nn.Module):
    """The blur network (module docstring). Defaults: the released GOPRO model.

    Args:
        nf: feature width (the kernel code has ``8·nf`` channels, so ``kernel_dim = 8·nf``).
        front_RBs, back_RBs: residual blocks before G and in the reconstruction.
        kernel_dim: kernel code channels (must equal ``8·nf``: G concatenates it innermost).
        input_nc: image channels.
        extractor_blocks: residual blocks of F (``KernelExtractor.n_blocks``).
    """

    def __init__(
        self,
        nf: int = 64,
        front_RBs: int = 10,
        back_RBs: int = 20,
        kernel_dim: int = 512,
        input_nc: int = 3,
        extractor_blocks: int = 4,
    ) -> None:
        super().__init__()
        if kernel_dim != 8 * nf:
            raise ValueError(f"KernelWizard needs kernel_dim = 8·nf = {8 * nf}, got {kernel_dim}")
        self.kernel_dim = kernel_dim
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(input_nc, nf, 3, 1, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(nf, nf, 3, 2, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(nf, nf, 3, 2, 1),
            nn.LeakyReLU(0.1),
            *[ResidualBlockNoBN(nf) for _ in range(front_RBs)],
        )
        self.kernel_extractor = KernelExtractor(nf, kernel_dim, extractor_blocks)
        self.adapter = KernelAdapter(nf)
        self.recon_trunk = nn.Sequential(
            *[ResidualBlockNoBN(nf) for _ in range(back_RBs)],
            nn.Conv2d(nf, nf * 4, 3, 1, 1),
            nn.PixelShuffle(2),
            nn.LeakyReLU(0.1),
            nn.Conv2d(nf, 64 * 4, 3, 1, 1),
            nn.PixelShuffle(2),
            nn.LeakyReLU(0.1),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(64, input_nc, 3, 1, 1),
        )

    #: image sides must be multiples of this (÷4 features, then five ÷2 U-Net levels)
    size_multiple = 128

    def code_shape(self, h: int, w: int) -> tuple[int, int, int]:
        """Shape of the kernel code for an ``h × w`` image (``[512, 2, 2]`` at 256 px)."""
        return (self.kernel_dim, h // self.size_multiple, w // self.size_multiple)

    def adapt_kernel(self, sharp: Tensor, code: Tensor) -> Tensor:
        """Blur ``sharp`` ([B, C, H, W] in [0, 1]) with the kernel code ``code`` (official
        ``adaptKernel``)."""
        feats = self.feature_extractor(sharp)
        return self.recon_trunk(self.adapter(feats, code)) + sharp

    def forward(self, sharp: Tensor, blur: Tensor) -> tuple[Tensor, Tensor]:
        """The kernel code (mean, log-variance) between a sharp and a blurred image (F)."""
        return self.kernel_extractor(self.feature_extractor(sharp), self.feature_extractor(blur))
