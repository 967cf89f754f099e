"""lit_restore.checkpoints: one safe reader whose every failure is one line naming the file.

Each broken file is written by the test itself (a text file, an HTML error page, an empty file,
truncated zip / legacy / safetensors files, pickled code, no state dict, another network), and
the same cases go through every reader that uses it (priors, ResShift, VQ, metric weights) and
through ``--ckpt_path`` of the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from entry_points import ROOT, run_entry
from safetensors.torch import save_file

from lit_restore.checkpoints import (
    CheckpointError,
    check_readable,
    load_state_dict_strict,
    read_checkpoint,
    read_state_dict,
    strip_prefixes,
)


def _sd() -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.arange(6.0).view(1, 1, 2, 3), "conv.bias": torch.zeros(1)}


class _Payload:  # a pickled class: what weights_only refuses
    pass


def _write_broken(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken files → the phrase their error must contain."""
    cases: dict[str, tuple[Path, str]] = {}
    p = tmp_path / "text.ckpt"
    p.write_text("hello, this is not a checkpoint\n")
    cases["text"] = (p, r"is not a checkpoint: it is a text file starting 'hello")
    p = tmp_path / "page.pt"
    p.write_text("<!DOCTYPE html><html>Too many requests</html>")
    cases["html"] = (p, r"is not a checkpoint: it is a text file starting '<!DOCTYPE html>")
    p = tmp_path / "empty.pth"
    p.write_bytes(b"")
    cases["empty"] = (p, r"is empty \(0 bytes\)")
    full = tmp_path / "full.pt"
    torch.save(_sd(), full)
    p = tmp_path / "truncated.pt"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cases["truncated zip"] = (
        p,
        r"is truncated or corrupt \(not a complete torch\.save zip archive",
    )
    legacy = tmp_path / "legacy_full.pt"
    torch.save(_sd(), legacy, _use_new_zipfile_serialization=False)
    p = tmp_path / "legacy_truncated.pt"
    p.write_bytes(legacy.read_bytes()[: legacy.stat().st_size // 2])
    cases["truncated legacy"] = (p, r"is truncated or corrupt \(not a complete torch\.save pickle")
    st = tmp_path / "full.safetensors"
    save_file(_sd(), str(st))
    p = tmp_path / "truncated.safetensors"
    p.write_bytes(st.read_bytes()[:-8])
    cases["truncated safetensors"] = (p, r"is not a readable safetensors file")
    p = tmp_path / "code.pt"
    torch.save({"state_dict": _sd(), "cfg": _Payload()}, p)
    cases["pickled code"] = (p, r"refusing to load .*it contains pickled Python objects")
    p = tmp_path / "nostate.pt"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, p)
    cases["no state dict"] = (p, r"holds no state dict: .*found a mapping with keys \['config'")
    return cases


def test_each_broken_file_is_one_named_error(tmp_path):
    for label, (path, phrase) in _write_broken(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            read_state_dict(path)
        msg = str(info.value)
        assert str(path) in msg, label
        assert "\n" not in msg, (label, msg)  # one line
        assert re.search(phrase, msg), (label, msg)


def test_missing_file_names_it_and_the_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt.*not found; get it from X"):
        read_checkpoint(tmp_path / "nope.pt", hint="get it from X")


def test_good_files_in_every_format_and_container(tmp_path):
    sd = _sd()
    torch.save(sd, tmp_path / "plain.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(sd, str(tmp_path / "w.safetensors"))
    save_file(sd, str(tmp_path / "w_no_suffix.bin"))  # safetensors recognised by its header
    torch.save(
        {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 1}, tmp_path / "l.ckpt"
    )
    torch.save(
        {"params_ema": {"_orig_mod.module." + k: v for k, v in sd.items()}}, tmp_path / "b.pth"
    )
    for name in ("plain.pt", "legacy.pt", "w.safetensors", "w_no_suffix.bin", "l.ckpt", "b.pth"):
        got = read_state_dict(tmp_path / name)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd), name
        check_readable(tmp_path / name)
    # an explicit container and a sub-module prefix
    torch.save({"mine": {"net.a": torch.ones(1), "other.b": torch.ones(1)}}, tmp_path / "c.pt")
    assert list(read_state_dict(tmp_path / "c.pt", key="mine", prefix="net.")) == ["a"]
    with pytest.raises(CheckpointError, match=r"c\.pt.*no key starts with 'xyz\.'"):
        read_state_dict(tmp_path / "c.pt", key="mine", prefix="xyz.")
    assert strip_prefixes({"module._orig_mod.module.x": 1}) == {"x": 1}


def test_strict_load_diff_is_readable():
    net = torch.nn.Conv2d(1, 2, 3)
    sd = {"weight": torch.zeros(2, 1, 5, 5), "extra": torch.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(net, sd, "checkpoint 'x.pt'")
    msg = str(info.value)
    assert "checkpoint 'x.pt' does not fit Conv2d" in msg
    assert "1 missing: bias" in msg and "1 unexpected: extra" in msg
    assert "weight: checkpoint (2, 1, 5, 5) vs model (2, 1, 3, 3)" in msg


def test_every_reader_names_the_broken_file(tmp_path):
    """Priors, the VQ autoencoder, ResShift's network weights and the LPIPS backbone all read
    through checkpoints.py, so each broken case is the same one-line error there."""
    from lit_restore.metrics import LPIPS
    from lit_restore.modules.resshift import ResShiftModule
    from lit_restore.nn import SwinUNet, VQModel
    from lit_restore.priors import ADMPrior, load_prior

    tiny_adm = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                    attention_resolutions="16", num_heads=2, learn_sigma=False)  # fmt: skip
    swin = dict(image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                attention_resolutions=(), swin_embed_dim=32, num_head_channels=32, window_size=4,
                lq_size=8)  # fmt: skip
    readers = {
        "ADMPrior": lambda p: ADMPrior(**tiny_adm, checkpoint=str(p)),
        "load_prior": lambda p: load_prior(p),
        "VQModel": lambda p: VQModel.from_pretrained(p, ch=32, ch_mult=(1,), num_res_blocks=1),
        "ResShift": lambda p: ResShiftModule(network=SwinUNet(**swin), weights=str(p), lpips_weight=0),
        "LPIPS": lambda p: LPIPS("alex", weights=p),
    }  # fmt: skip
    cases = _write_broken(tmp_path)
    for label in ("text", "empty", "truncated zip"):
        path, phrase = cases[label]
        for name, read in readers.items():
            with pytest.raises(CheckpointError, match=phrase) as info:
                read(path)
            assert str(path) in str(info.value), (name, label)


def _one_error_line(stderr: str, path: Path, phrase: str) -> None:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--ckpt_path" in errors[0] and str(path) in errors[0], stderr
    assert re.search(phrase, errors[0]), errors[0]
    assert "Traceback" not in stderr


def test_cli_ckpt_path_text_file_is_one_error_line(tmp_path):
    """``train.py fit --ckpt_path`` on a text file, run as a user would: one ``error:`` line
    naming the option and the file, exit 2, before Lightning's ``torch.load`` turns it into
    ``KeyError: 101``."""
    path, phrase = _write_broken(tmp_path)["text"]
    proc = run_entry(
        "train.py", "fit", "--config", "configs/experiment/resshift_demo_pixel.yaml",
        "--ckpt_path", path, env={"OMP_NUM_THREADS": "1"}, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    _one_error_line(proc.stderr, path, phrase)


def test_cli_ckpt_path_truncated_is_one_error_line(tmp_path, capsys):
    """The same through :func:`run_cli` in-process (no interpreter start) for a truncated file."""
    from lit_restore.cli import TrainCLI, run_cli

    path, phrase = _write_broken(tmp_path)["truncated zip"]
    argv = ["fit", "--config", str(ROOT / "configs/experiment/resshift_demo_pixel.yaml")]
    rc = run_cli(TrainCLI, [*argv, "--ckpt_path", str(path)])
    assert rc == 2
    _one_error_line(capsys.readouterr().err, path, phrase)
