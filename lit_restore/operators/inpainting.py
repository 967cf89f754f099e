"""Inpainting: ``y = m ⊙ x`` with a per-image mask ``m`` (1 = known), ``y`` the size of ``x``.

Keeping ``y`` full-size (missing pixels = 0, mid-grey in [-1, 1]) makes the SVD trivial:
``U = V = I`` and the singular values are the mask itself (DDRM/DDNM/DDPG permute the kept
pixels first instead; with our convention only zeros mark the null space). Hence
``A = Aᵀ = A⁺ = m ⊙ ·`` and ``Aᵀ(AAᵀ+ηI)⁻¹ y = m ⊙ y / (1+η)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .banks import bank_choice, load_mask_bank
from .base import LinearOperator, per_image
from .masks import box_mask, freeform_mask, load_mask_file, mixed_mask, random_mask

MASK_TYPES = ("box", "random", "freeform", "mixed", "file", "bank")


class Inpainting(LinearOperator):
    """Masking operator with masks drawn per image by :meth:`sample_params`.

    Args:
        mask_type: "box" (DPS ``random_sq_bbox``), "random" (DPS random pixels), "freeform"
            (brush strokes), "mixed" (ResShift's box / irregular / outpainting training masks,
            :func:`.masks.mixed_mask`), "file" (one user mask for every image) or "bank" (masks
            from a folder or ``.npy`` stack, one drawn per image, :func:`.banks.load_mask_bank`).
        box_size, margin: box side and minimum distance to the border (DPS: 128, 16 on 256²).
        drop_range: range of the random drop rate (DPS config: (0.3, 0.7); DPS paper: 0.92).
        mask_path: the mask file for ``mask_type="file"`` (image: white = known, .npy, .pt),
            the folder or stack for ``"bank"``.
        invert_mask: swap known/missing in the file mask.
        max_strokes, max_vertices, stroke_width, stroke_length: free-form stroke options,
            widths and lengths as fractions of the image side (see :func:`.masks.freeform_mask`).
    """

    has_svd = True

    def __init__(
        self,
        mask_type: str = "box",
        box_size: int = 128,
        margin: int = 16,
        drop_range: tuple[float, float] = (0.3, 0.7),
        mask_path: str | None = None,
        invert_mask: bool = False,
        max_strokes: int = 8,
        max_vertices: int = 8,
        stroke_width: tuple[float, float] = (0.05, 0.15),
        stroke_length: tuple[float, float] = (0.1, 0.3),
    ) -> None:
        super().__init__()
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        self.mask_type = mask_type
        self.box_size, self.margin = int(box_size), int(margin)
        self.drop_range = tuple(float(v) for v in drop_range)
        self.stroke_opts = dict(
            max_strokes=int(max_strokes),
            max_vertices=int(max_vertices),
            width_range=tuple(stroke_width),
            length_range=tuple(stroke_length),
        )
        self.mask_path = mask_path
        mask = None
        if mask_type == "file":
            if mask_path is None:
                raise ValueError("Inpainting(mask_type='file') needs mask_path=<mask image file>")
            mask = load_mask_file(mask_path, invert=invert_mask)
        bank = None
        if mask_type == "bank":
            if mask_path is None:
                raise ValueError("Inpainting(mask_type='bank') needs mask_path=<folder or .npy>")
            bank = load_mask_bank(mask_path, invert=invert_mask)
        self.register_buffer("mask", mask)
        self.register_buffer("bank", bank, persistent=False)

    # ------------------------------------------------------------ per-image masks
    def sample_params(self, generator: torch.Generator, image_shape: tuple[int, ...]) -> dict:
        _, h, w = image_shape
        if self.mask_type == "box":
            mask = box_mask(h, w, self.box_size, self.margin, generator)
        elif self.mask_type == "random":
            mask = random_mask(h, w, self.drop_range, generator)
        elif self.mask_type == "freeform":
            mask = freeform_mask(h, w, generator, **self.stroke_opts)
        elif self.mask_type == "mixed":
            mask = mixed_mask(h, w, generator)
        elif self.mask_type == "bank":
            mask = self.bank[bank_choice(len(self.bank), generator)].cpu()
            if tuple(mask.shape[-2:]) != (h, w):
                raise ValueError(
                    f"mask bank {self.mask_path!r} holds {tuple(mask.shape[-2:])} masks but the "
                    f"images are {(h, w)}; set the data crop_size/resize to match"
                )
        else:
            mask = self.mask.cpu()
            if tuple(mask.shape[-2:]) != (h, w):
                raise ValueError(
                    f"mask file {self.mask_path!r} is {tuple(mask.shape[-2:])} but the images are "
                    f"{(h, w)}; resize the mask or set the data crop_size/resize to match"
                )
        return {"mask": mask}

    def param_names(self) -> set[str]:
        return {"mask"}

    # --------------------------------------------------------------------- operator
    def _mask(self, like: Tensor) -> Tensor:
        if self.mask is None:
            raise RuntimeError(
                f"Inpainting(mask_type={self.mask_type!r}) draws a mask per image: call "
                "operator.bind(batch['params']) (or sample_params) before applying it"
            )
        mask = self.mask.to(dtype=like.dtype, device=like.device)
        if tuple(mask.shape[-2:]) != tuple(like.shape[-2:]):
            raise ValueError(
                f"mask is {tuple(mask.shape[-2:])} but the image is {tuple(like.shape[-2:])}"
            )
        return mask

    def measurement_shape(self, x_shape) -> tuple[int, ...]:
        return tuple(x_shape)

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        if self.mask is not None and tuple(self.mask.shape[-2:]) != tuple(shape[-2:]):
            raise ValueError(
                f"mask is {tuple(self.mask.shape[-2:])} but the images are {tuple(shape[-2:])}"
            )

    def A(self, x: Tensor) -> Tensor:
        return self._mask(x) * x

    def adjoint(self, y: Tensor) -> Tensor:
        return self._mask(y) * y

    def pinv(self, y: Tensor) -> Tensor:
        return self._mask(y) * y

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        return self._mask(y) * y / (1 + per_image(eta, y))

    # --------------------------------------------------------------------- SVD view
    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    def V(self, z: Tensor) -> Tensor:
        return z.view(z.shape[0], *self._shape())

    def Ut(self, y: Tensor) -> Tensor:
        return y.flatten(1)

    def U(self, z: Tensor) -> Tensor:
        return z.view(z.shape[0], *self._shape())

    def singulars(self) -> Tensor:
        """The mask broadcast over channels: ``[n]`` for one mask, ``[B, n]`` for a bound batch."""
        c, h, w = self._shape()
        if self.mask is None:
            raise RuntimeError("bind a mask before using the SVD view of Inpainting")
        m = self.mask
        if m.dim() == 3:
            return m.expand(c, h, w).reshape(-1)
        return m.expand(m.shape[0], c, h, w).reshape(m.shape[0], -1)

    def to_image(self, y: Tensor) -> Tensor:
        """The masked image (missing pixels at 0 = mid-grey)."""
        return y

    def extra_repr(self) -> str:
        return f"mask_type={self.mask_type!r}"
