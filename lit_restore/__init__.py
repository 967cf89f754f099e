"""lit_restore: diffusion-based image restoration on PyTorch Lightning."""

__version__ = "0.1.0"
