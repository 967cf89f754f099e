"""User degradations end to end through ``sample.py``'s CLI: a kernel bank and a mask bank from
disk, and a user's own operator class named by its ``class_path``.

The runs are the method × operator matrix's (``tests/test_end_to_end.py``: the tiny ADM, three
16-px dead-leaves images, 3 guidance steps) with the operator swapped; what a user sees is checked:
the run finishes with every image scored and written, or, for a method the operator cannot serve,
one ``error:`` line naming what is missing.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_end_to_end import TINY_ADM, assert_three_images_scored_and_written, write_run_config

from lit_restore.cli import SampleCLI, run_cli


def _run(
    tmp_path, monkeypatch, method: str, sampler: tuple[str, dict], op: tuple[str, dict]
) -> int:
    """Write the run's config (``op``'s class by name in lit_restore.operators, or a user class
    by its dotted path), run it in-process as ``sample.py test`` does, return the exit status."""
    monkeypatch.setattr("sys.argv", ["sample.py"])
    config = write_run_config(tmp_path, method, "user", TINY_ADM, sampler, op)
    return run_cli(SampleCLI, ["test", "--config", str(config)])


def test_kernel_bank_blur_from_a_file(tmp_path, monkeypatch, capsys):
    """A ``.npy`` stack of three different 5×5 kernels, one drawn per image (DPS: needs only A)."""
    kernels = np.zeros((3, 5, 5), dtype=np.float32)
    kernels[0, 2, :] = 1 / 5  # horizontal line
    kernels[1, :, 2] = 1 / 5  # vertical line
    kernels[2] = 1 / 25  # box
    np.save(tmp_path / "kernels.npy", kernels)
    op = ("KernelBankBlur", {"path": str(tmp_path / "kernels.npy"), "boundary": "circular"})
    code = _run(tmp_path, monkeypatch, "dps", ("DPS", {"steps": 3}), op)
    assert code == 0, capsys.readouterr().err
    assert_three_images_scored_and_written(tmp_path / "runs" / "dps" / "user")


def test_mask_bank_inpainting_from_a_folder(tmp_path, monkeypatch, capsys):
    """A folder of two mask PNGs (LaMa-style: white = missing), one drawn per image, with DDNM
    (inpainting has an SVD: the masked pixels)."""
    from PIL import Image

    masks = tmp_path / "masks"
    masks.mkdir()
    for i, (r0, r1) in enumerate([(2, 8), (8, 14)]):
        m = np.zeros((16, 16), dtype=np.uint8)
        m[r0:r1, 3:13] = 255
        Image.fromarray(m).save(masks / f"mask{i}.png")
    op = ("Inpainting", {"mask_type": "bank", "mask_path": str(masks)})
    code = _run(tmp_path, monkeypatch, "ddnm", ("DDNM", {"steps": 3}), op)
    assert code == 0, capsys.readouterr().err
    assert_three_images_scored_and_written(tmp_path / "runs" / "ddnm" / "user")


@pytest.mark.parametrize(
    ("method", "sampler", "class_path", "init_args"),
    [
        ("dps", ("DPS", {"steps": 3}), "test_operators.UserScale", {}),
        ("dds", ("DDS", {"steps": 3}), "test_operators.UserScale", {}),
        ("ddnm", ("DDNM", {"steps": 3}), "test_operators.UserDiagonal", {"gains": [1, 0.5, 0.25]}),
    ],
)
def test_a_user_operator_class_runs(tmp_path, monkeypatch, capsys, method, sampler, class_path,
                                    init_args):  # fmt: skip
    """The user operators of ``tests/test_operators.py`` (the base-class docstring's recipe: ``A``
    and ``adjoint``; plus an SVD for DDNM) named by ``class_path`` in the run's config."""
    code = _run(tmp_path, monkeypatch, method, sampler, (class_path, init_args))
    assert code == 0, capsys.readouterr().err
    assert_three_images_scored_and_written(tmp_path / "runs" / method / "user")


def test_a_user_operator_without_an_svd_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """DDNM needs the operator's SVD; a user class with only ``A``/``adjoint`` is refused by
    name in a single ``error:`` line, before any restoration."""
    code = _run(
        tmp_path, monkeypatch, "ddnm", ("DDNM", {"steps": 3}), ("test_operators.UserScale", {})
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert "SVD" in lines[0] and "UserScale" in lines[0], lines[0]
