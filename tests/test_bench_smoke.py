"""bench/bench_samplers.py cannot rot: it builds the published ADM layouts and runs its smallest mode.

The smallest mode is the real ``ADMPrior`` (FFHQ-256 topology at 32 px, width 32), real operators,
one timed step of DDRM and DPS, extrapolated to the published step counts (20 and 1000).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from lit_restore.priors import ADMPrior
from lit_restore.priors.registry import REGISTRY

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_samplers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_samplers", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_samplers"] = module
    spec.loader.exec_module(module)
    return module


def test_full_configs_are_the_published_layouts(bench):
    """Without --reduced the bench builds exactly the registry's flags; the parameter counts are
    the published ones (552.8 M ImageNet-256 uncond, 93.6 M FFHQ ``ffhq_10m``)."""
    args = bench.parse_args([])
    expected = {"adm-imagenet256-uncond": 552.8, "adm-ffhq256-dps": 93.6}
    for name, params_m in expected.items():
        cfg = bench.prior_config(name, args)
        assert cfg == REGISTRY[name].config
        with torch.device("meta"):
            prior = ADMPrior(**cfg, frozen=False)
        n = sum(p.numel() for p in prior.parameters()) / 1e6
        assert abs(n - params_m) < 0.05, (name, n)
    assert {m: s.published_steps for m, s in bench.METHODS.items()} == {
        "safari": 1000, "dps": 1000, "ddnm": 100, "ddrm": 20, "ddpg": 100, "idpg": 100, "fdgr": 100,
        "diffpir": 100, "pgdm": 100, "dds": 50, "reddiff": 100, "daps": 200,
    }  # fmt: skip


def test_smallest_mode_runs_and_extrapolates(bench, tmp_path, capsys):
    out = tmp_path / "rows.json"
    argv = [
        "--reduced", "--image-size", "32", "--width-div", "16", "--device", "cpu",
        "--priors", "adm-ffhq256-dps", "--methods", "ddrm,dps", "--batches", "2",
        "--precisions", "fp32", "--steps-override", "1", "--warmup", "0", "--no-fork",
        "--threads", "1", "--json", str(out),
    ]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        rows = bench.main(argv)  # --threads 1: fast on a loaded machine
    finally:
        torch.set_num_threads(threads)  # the bench sets it process-wide
    assert [r["method"] for r in rows] == ["ddrm", "dps"]
    for r, published in zip(rows, (20, 1000)):
        assert r["extrapolated"] and r["timed_steps"] == 1 and r["published_steps"] == published
        assert r["nfe_per_image"] == published  # one network call per step for both
        (step,) = r["step_seconds"]  # one timed step: median = it, fixed = the rest
        expect = (step * published + r["measured_seconds"] - step) / 2
        assert r["seconds_per_image"] == pytest.approx(expect) and 0 < step <= r["measured_seconds"]
        assert r["image_size"] == 32 and r["num_channels"] == 32 and r["batch"] == 2
    text = capsys.readouterr().out
    assert "| adm-ffhq256-dps | 32px C=32" in text and "20 (extrapolated from 1)" in text
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows and saved["meta"]["reduced"] is True


def test_bad_method_is_a_clear_error(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "dps,nope"])


def test_peak_rss_window_sees_a_200_mib_allocation(bench):
    """The CPU memory column: the window starts at the current RSS, not at an earlier peak."""
    big = torch.ones(100 * 2**20 // 4)  # an earlier 100 MiB peak that must not mask the window
    del big
    base, method = bench.reset_peak_rss()
    if method != "VmHWM":
        pytest.skip("no /proc/self/clear_refs here (ru_maxrss fallback cannot be reset)")
    x = torch.ones(200 * 2**20 // 4)  # 200 MiB, touched
    grown = bench.peak_rss(method) - base
    del x
    assert 190 < grown < 400, (method, grown)


def test_forked_row_reports_its_own_memory(bench):
    """One row in a forked child (the default on CPU) comes back with a positive RSS growth."""
    args = bench.parse_args(
        ["--reduced", "--image-size", "32", "--width-div", "16", "--device", "cpu",
         "--steps-override", "1", "--warmup", "0", "--threads", "1"]
    )  # fmt: skip
    row = bench.run_isolated("adm-ffhq256-dps", "ddrm", 1, "fp32", args)
    assert row["nfe_per_image"] == 20 and row["memory_kind"].startswith("cpu_peak_rss_growth")
    assert row["peak_memory_mib"] > 0


def _run_gpu_smoke(tmp_path, rows: str) -> tuple[dict, str]:
    from bench import run_gpu

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run_gpu.BEGIN}\nold table\n{run_gpu.END}\noutro\n")
    threads = torch.get_num_threads()
    try:
        out = run_gpu.main(
            ["--smoke", "--device", "cpu", "--rows", rows, "--no-compile",
             "--json", str(tmp_path / "r.json"), "--readme", str(readme)]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [r["row"] for r in saved["rows"]] == rows.split(",") and saved["meta"]["smoke"]
    nfe = {"dps-ffhq": 1000, "safari-ffhq": 1000, "dps-imagenet": 1000, "safari-imagenet": 1000,
           "ddrm-ffhq": 20, "ddnm-ffhq": 100, "ddpg-ffhq": 100, "resshift-infer": 4}  # fmt: skip
    for r in out["rows"]:
        off, fast = r["official"], r["fast"]
        assert off["settings"] == {"precision": "fp32", "compile": False, "channels_last": False}
        assert fast["settings"]["precision"] == "bf16" and fast["settings"]["channels_last"]
        assert off["s_per_image"] > 0 and fast["s_per_image"] > 0 and r["speedup"] > 0
        assert off["peak_mib_per_image"] == off["peak_mib"] / off["batch"]
        if r["row"] in nfe:
            assert off["nfe_per_image"] == fast["nfe_per_image"] == nfe[r["row"]]
            assert set(r["fast_vs_official"]) == {"max_abs", "psnr_db"}
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert all(f"| {name} |" in text for name in rows.split(","))
    return out, text


def test_run_gpu_smoke(tmp_path):
    """``python -m bench.run_gpu --smoke``: the one-command GPU benchmark on CPU-sized networks
    (DPS through the gradient path, ResShift inference): both variants run through the library's
    flags, JSON written, the README block between the markers replaced. Every row:
    ``test_run_gpu_smoke_all_rows`` (slow)."""
    _run_gpu_smoke(tmp_path, "dps-ffhq,resshift-infer")


@pytest.mark.slow
def test_run_gpu_smoke_all_rows(tmp_path):
    from bench import run_gpu

    _run_gpu_smoke(tmp_path, ",".join(r.name for r in run_gpu.ROWS))


def test_latent_bench_runs_and_counts_resamplings():
    """bench/bench_latent.py in its smallest mode (32 px, one timed step) and its schedule count:
    ReSample's official 500 steps resample at indices 10, 20, …, 330 (≤ N − N//3 = 334), 17 of
    them in the pixel stage (≥ N//3 = 166) and 16 in the latent stage; each adds a 5-step
    look-ahead, so its NFE per image is 500 + 33·5 = 665."""
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_latent.py"
    spec = importlib.util.spec_from_file_location("bench_latent", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.resample_counts(500) == (17, 16)
    assert module.resample_lookahead_evaluations(500) == 165
    args = ["--reduced", "--image-size", "32", "--steps", "1", "--device", "cpu"]
    rows = module.main([*args, "--methods", "psld,resample"])
    assert [r["nfe_per_image"] for r in rows] == [1000, 665]
    assert all(r["seconds_per_image"] > 0 for r in rows)


def test_resshift_scaling_chain_smoke(tmp_path):
    """``python -m bench.bench_resshift_scaling chain --tiny``: one LQ side, untiled and
    ``chop_size: auto``, each measured in its own forked child; the JSON holds the row (written
    as soon as it is measured) and the seconds/memory per output megapixel are the per-image
    numbers divided by the output's (4·16)² pixels."""
    from bench import bench_resshift_scaling as scaling

    out = tmp_path / "scaling.json"
    scaling.main(["chain", "--tiny", "--sizes", "16", "--repeats", "1", "--json", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    mpx = (4 * 16) ** 2 / 1e6
    assert row["lq"] == 16 and row["out_mpx"] == mpx
    assert row["auto_tile_lq_px"] is None  # 16 px is far below the size where tiling pays
    for v in scaling.VARIANTS:
        assert row["s_per_image"][v] > 0 and row["peak_mib"][v] > 0
        assert row["s_per_mpx"][v] == pytest.approx(row["s_per_image"][v] / mpx)
        assert row["peak_mib_per_mpx"][v] == pytest.approx(row["peak_mib"][v] / mpx)
    table = scaling.markdown([row]).splitlines()
    assert len(table) == 3 and table[2].startswith("| 16 (64²) | untiled |")


def test_runtime_compile_smoke(monkeypatch, capsys):
    """``python -m bench.bench_runtime --compile --options``: float32 against ``compile`` only,
    the first (building) call timed apart, the break-even table printed. The ``aot_eager``
    backend stands in for inductor (whose C++ build takes minutes here): it traces the same
    graphs and computes what eager computes, so the outputs are equal exactly."""
    from bench import bench_runtime
    from lit_restore import runtime

    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(bench_runtime, "METHODS", dict(bench_runtime.METHODS))
    argv = ["--methods", "ddnm", "--steps", "2", "--time-steps", "1", "--repeats", "1"]
    argv += ["--train-steps", "1", "--images", "1", "--options", "--compile", "--warm-cache"]
    result = bench_runtime.main(argv)
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["ddnm", "resshift (tiny, random weights)"]
    for r in rows:
        assert set(r) >= {"fp32_s", "compile"} and "bf16" not in r and "channels_last" not in r
        c = r["compile"]
        assert c["max_abs"] == 0.0
        assert c["build_s"] == pytest.approx(c["first_s"] - c["s"])
        assert c["build_s"] > 0  # tracing the graph costs more than one compiled call
    assert "break-even" in capsys.readouterr().out


def test_break_even_is_build_over_saving():
    """100 s of build repaid at 0.5 s saved per chain: 200 chains; no saving: never."""
    from bench.bench_runtime import break_even

    assert break_even(100.0, 1.5, 1.0) == pytest.approx(200.0)
    assert break_even(100.0, 1.0, 1.0) == float("inf")
    assert break_even(100.0, 1.0, 1.2) == float("inf")


def test_resshift_bench_counts_the_network_calls_of_each_sampling_mode(capsys):
    """``bench/bench_resshift.py --sampling posterior,one_step``: ResShift's chain and SinSR's one
    step side by side; each row's ``network_calls`` are counted by a hook on the network during
    the measured restoration of one image, and must equal the mode's definition: T = 4 calls for
    the released schedule's chain, 1 for ``one_step``."""
    from bench import bench_resshift

    bench_resshift.main(
        ["--tiny", "--reduced", "--infer-only", "--precisions", "fp32",
         "--sampling", "posterior,one_step", "--threads", "1"]
    )  # fmt: skip
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert [(r["sampling"], r["infer"]["network_calls"]) for r in rows] == [
        ("posterior", 4),
        ("one_step", 1),
    ]
    for r in rows:
        assert r["train"] is None and r["batch"] == 1 and r["infer"]["s_per_image"] > 0


def test_demo_weights_tune_reads_any_folder_and_refuses_an_empty_match(tmp_path):
    """``bench/demo_weights_tune.py --folder``: the A⁺y row over two demo files (one PSNR per
    file, the folder in the JSON), and a pattern that matches nothing is one ``error:`` line."""
    from entry_points import run_entry

    out = tmp_path / "rows.json"
    run_entry(
        "bench/demo_weights_tune.py", "--folder", "data/demo", "--pattern", "c*.png",
        "--crop", "64", "--methods", "pinv", "--out", out, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["args"]["folder"] == "data/demo"
    (row,) = saved["results"]
    assert row["method"] == "pinv" and len(row["per_image_psnr"]) == 2  # chelsea, coffee
    bad = run_entry(
        "bench/demo_weights_tune.py", "--folder", "data/demo", "--pattern", "nothing*.png",
        "--methods", "pinv", check=False,
    )  # fmt: skip
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error: ")]
    assert bad.returncode != 0 and len(errors) == 1, bad.stderr[-2000:]
    assert "--folder data/demo" in errors[0] and "nothing*.png" in errors[0]
