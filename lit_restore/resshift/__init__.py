"""ResShift: residual-shifting diffusion for restoration (schedule, Swin UNet, VQ-f4, sampler)."""

from lit_restore.resshift.schedule import ResShiftSchedule, exponential_sqrt_etas

__all__ = ["ResShiftSchedule", "exponential_sqrt_etas"]
