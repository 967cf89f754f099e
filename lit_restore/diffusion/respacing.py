"""Which timesteps a shortened chain of N steps visits, out of the T training steps.

Each rule returns original timesteps in sampling order (descending); the chain then ends at
``t = −1`` (ᾱ = 1), except ``"ldm"``'s, which ends at ``t = 0`` (:func:`chain_end`). The rules are
named after where they come from, so that a method's config can use the one its official code uses:

* ``"leading"`` (alias ``"uniform"``) — :func:`leading_timesteps`, ermongroup/ddim
  ``runners/diffusion.py`` (``skip_type="uniform"``: ``range(0, T, T // N)``) truncated to its
  first N entries: DDNM (``get_schedule_jump``) and DDPG/FDGR; diffusers calls it "leading".
  T = 1000, N = 100 gives 990, 980, …, 0; N that does not divide T leaves the top of the chain
  unvisited (N = 300: skip 3, 897 … 0).
* ``"ddrm"`` — :func:`ddrm_timesteps`, bahjat-kawar/ddrm ``runners/diffusion.py``
  (``seq = range(0, T, T // N)`` *untruncated*): when N does not divide T the chain has more than
  N steps (N = 300: skip 3, 334 steps 999 … 0; 984 of N = 1 … 1000 for T = 1000). DDRM's
  published numbers were made with it.
* ``"guided_diffusion"`` — :func:`space_timesteps`, openai/guided-diffusion
  ``guided_diffusion/respace.py::space_timesteps(T, [N])`` (also DPS's copy): the stride
  (T−1)/(N−1) is accumulated by repeated float addition and each partial sum rounded with Python's
  ``round``; N = 1 takes ``{0}``.
* ``"linspace"`` — :func:`linspace_timesteps`, ``round(i·(T−1)/(N−1))``; close to, but not the
  same as, ``space_timesteps`` (the rounding of the partial sums differs at 278 of N = 2 … 1000
  for T = 1000, the first N = 21, and N = 1 gives ``[T−1]``). Kept for configs that name it.
* ``"quad"`` — :func:`quad_timesteps`, yuanzhi-zhu/DiffPIR ``main_ddpir.py`` (``skip_type="quad"``): the
  noise-level index ``seq_i = int(√(i·T²/(N−1)))`` (its last entry minus one) read from the top
  of the chain, ``t_i = T−1−seq_i``: dense near t = T−1, sparse near 0 (N = 100: 999, 899, 858,
  …, 0). Indices may repeat when N approaches T; they are kept, as the official loop keeps them.
* ``"ldm"`` — :func:`ldm_timesteps`, CompVis latent-diffusion
  ``ldm/modules/diffusionmodules/util.py::make_ddim_timesteps`` (``ddim_discr_method="uniform"``):
  ``range(0, T, T // N)`` untruncated *plus one* ("to get the final alpha values right"), and
  ``make_ddim_sampling_parameters`` sets the last step's ᾱ_prev to ``alphacums[0]``: the chain
  ends at ``t = 0``, not at ᾱ = 1. T = 1000, N = 500 gives 999, 997, …, 1 → 0. The DDIM samplers
  of the LDM family (soominkwon/resample, LituRout/PSLD) use it. N with a top entry
  ``(⌈T/(T//N)⌉ − 1)·(T//N) + 1 > T − 1`` (N = 1000, 300 … for T = 1000) index past ᾱ there and
  are refused here. The PSLD fork runs those with the last τ = N (N = T, every N > T/2) by
  taking ᾱ one index lower while the network keeps τ: :func:`ldm_ddim_schedule` (network and ᾱ
  timesteps of either form; not a ``spacing``, as the network's t then differs from ᾱ's).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def leading_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """DDIM's rule: ``range(0, T, T // N)``, first N, descending."""
    skip = num_timesteps // steps
    return list(range(0, num_timesteps, skip))[:steps][::-1]


def ddrm_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """DDRM's rule: all of ``range(0, T, T // N)``, descending (more than N when N ∤ T)."""
    return list(range(0, num_timesteps, num_timesteps // steps))[::-1]


def space_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """guided-diffusion ``space_timesteps(T, [N])`` (one section), descending.

    ``cur = 0.0; repeat N times: take round(cur); cur += (T−1)/(N−1)`` (stride 1 for N = 1)."""
    stride = 1.0 if steps <= 1 else (num_timesteps - 1) / (steps - 1)
    taken, cur = set(), 0.0
    for _ in range(steps):
        taken.add(round(cur))
        cur += stride
    return sorted(taken, reverse=True)


def linspace_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``round(i·(T−1)/(N−1))`` for i = 0 … N−1, descending (N = 1: ``[T−1]``)."""
    if steps == 1:
        return [num_timesteps - 1]
    frac = (num_timesteps - 1) / (steps - 1)
    return sorted({round(i * frac) for i in range(steps)}, reverse=True)


def quad_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """DiffPIR's ``skip_type="quad"``: ``T−1−int(√(i·T²/(N−1)))`` with the last index minus one
    (so the chain ends at t = 0); N = 1: ``[T−1]``."""
    if steps == 1:
        return [num_timesteps - 1]
    # numpy.linspace(0, T², N): i·(T²/(N−1)) in float64, the last point exactly T²
    step = num_timesteps**2 / (steps - 1)
    seq = [int(math.sqrt(i * step)) for i in range(steps - 1)] + [num_timesteps]
    seq[-1] = seq[-1] - 1
    return [num_timesteps - 1 - s for s in seq]


def ldm_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """CompVis ``make_ddim_timesteps(uniform)``: ``range(0, T, T // N) + 1``, descending."""
    ts = [t + 1 for t in range(0, num_timesteps, num_timesteps // steps)][::-1]
    if ts[0] > num_timesteps - 1:
        raise ValueError(
            f"spacing 'ldm' with steps={steps}: CompVis's grid range(0, {num_timesteps}, "
            f"{num_timesteps // steps}) + 1 reaches t = {ts[0]} > {num_timesteps - 1} (the "
            "official DDIM sampler fails there too); choose other steps or spacing 'uniform'"
        )
    return ts


#: spacing name → rule; ``"uniform"`` is the historical name of ``"leading"``.
SPACINGS: dict[str, Callable[[int, int], list[int]]] = {
    "leading": leading_timesteps,
    "uniform": leading_timesteps,
    "ddrm": ddrm_timesteps,
    "guided_diffusion": space_timesteps,
    "linspace": linspace_timesteps,
    "quad": quad_timesteps,
    "ldm": ldm_timesteps,
}

#: where a rule's chain ends when it is not ``t = −1`` (ᾱ = 1)
_CHAIN_ENDS: dict[str, int] = {"ldm": 0}


def chain_end(spacing: str) -> int:
    """The timestep the last step of a ``spacing`` chain lands on: −1 (ᾱ = 1, the clean image)
    for every rule but ``"ldm"``, whose DDIM ends at ᾱ_0 (``alphas_prev[0] = alphacums[0]``)."""
    return _CHAIN_ENDS.get(spacing, -1)


def ldm_ddim_schedule(num_timesteps: int, steps: int) -> tuple[list[int], list[int], list[int]]:
    """The ``"ldm"`` chain as LituRout/PSLD's fork runs it (``stable-diffusion/ldm/modules/
    diffusionmodules/util.py::make_ddim_sampling_parameters``, the sampler
    ``ldm/models/diffusion/psld.py::DDIMSampler``), in sampling order (descending):

    * network timesteps: the ``"ldm"`` grid ``τ = range(0, T, T // N) + 1`` (:func:`ldm_timesteps`);
    * the ᾱ index of each step: τ itself — or τ − 1 where the fork's fix applies ("subtracting 1
      … to match the dimension": the last τ equals the number of steps, i.e. N = T, every
      N > T/2 and N = 1, grids that CompVis's own code cannot index); the network is then still
      asked at τ, one step above its ᾱ;
    * the ᾱ index the step goes to: the next step's, and :func:`chain_end` ``("ldm")`` = 0 for
      the last — the chain ends at ᾱ_0.

    Returns ``(network_t, alpha_t, alpha_next)``, three lists of equal length.

    Raises:
        ValueError: N outside [1, T], or a grid that overflows without the fork's fix (N = 3,
            333 … for T = 1000; the official code raises ``IndexError``), as :func:`ldm_timesteps`.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    grid = [t + 1 for t in range(0, num_timesteps, num_timesteps // steps)]
    if grid[-1] == len(grid):  # the fork's shift of the ᾱ indices
        net_t = grid[::-1]
        alpha_t = [t - 1 for t in net_t]
    else:
        net_t = alpha_t = ldm_timesteps(num_timesteps, steps)
    return net_t, alpha_t, [*alpha_t[1:], chain_end("ldm")]


def respace(num_timesteps: int, steps: int, spacing: str = "uniform") -> list[int]:
    """Original timesteps visited by an N-step chain, in sampling order (without the final −1).

    Raises:
        ValueError: N outside [1, T] or an unknown spacing name.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return SPACINGS[spacing](num_timesteps, steps)
