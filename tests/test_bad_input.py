"""Bad input: every option is checked before any work, with a one-line error and exit code 2.

Each case fails on the old code (a traceback, or an error only after all images were upscaled
and scored, or Hydra's message without the nearest valid key).
"""

import pytest

# (argv, the one-line message it must give)
BAD = [
    (["run", "profile.runs=0"], "profile.runs=0 (--runs): must be >= 1"),
    (["profile", "--methods", "bicubic", "--runs", "0"], "profile.runs=0 (--runs): must be >= 1"),
    (
        ["profile", "--methods", "bicubic", "--warmup", "-1"],
        "profile.warmup=-1 (--warmup): must be >= 0",
    ),
    (
        ["profile", "--methods", "bicubic", "--max-time", "-1"],
        "profile.max_time=-1.0 (--max-time): must be >= 0",
    ),
    (["run", "seed=abc"], "seed='abc': must be an integer"),
    (["run", "seed=1.5"], "seed=1.5: must be an integer"),
    (["run", "force=maybe"], "force='maybe' (--force): must be true or false"),
    (["run", "metric_batch_size=0"], "metric_batch_size=0: must be >= 1"),
    (["run", "device=gpu"], "device='gpu' (--device): must be auto, cpu, cuda or cuda:N"),
    (["run", "sede=1"], "unknown key 'sede' (did you mean seed?)"),
    (["run", "profile.rns=2"], "unknown key 'profile.rns' (did you mean profile.runs"),
    (["run", "suite=papr"], "unknown suite 'papr' (did you mean paper?)"),
    (["run", "seed=1,2"], "sweeps are not supported"),
    (["run", "--methods", "bicubc"], "unknown method 'bicubc' (did you mean bicubic?)"),
    (["run", "--datasets", "drelsr"], "unknown dataset 'drelsr' (did you mean drealsr"),
    (["run", "--datasets", "./no/such/folder"], "--datasets ./no/such/folder: folder not found"),
    (["run", "--metrics", "psnr,ssm"], "unknown metric 'ssm' (did you mean ssim?)"),
    (["run", "--methods", "bicubic,bicubic"], "a name is given twice"),
    # method and dataset nodes: keys from their YAML, types from its defaults
    (["run", "method.batch_size=x"], "method.bicubic.batch_size='x': must be an integer"),
    (["run", "method.batch_size=0"], "method.bicubic.batch_size=0: must be >= 1"),
    (["run", "method.batchsize=2"], "unknown method key 'batchsize' (did you mean batch_size?)"),
    (
        ["run", "method.bicubic.batchsize=2"],
        "unknown key 'method.bicubic.batchsize' (did you mean method.bicubic.batch_size",
    ),
    (["run", "method.adcsr.arch=tiny"], "method 'adcsr' is not selected (--methods)"),
    (
        ["run", "--methods", "adcsr", "method.color_match=3"],
        "method.adcsr.color_match=3: must be true or false",
    ),
    (["run", "--methods", "adcsr", "method.arch=huge"], "method.arch: 'huge' is not one of"),
    (["run", "dataset.scale=0"], "dataset.embedded.scale=0: must be >= 1"),
    (
        ["run", "--datasets", "drealsr", "dataset.rot=/x"],
        "unknown dataset key 'rot' (did you mean root?)",
    ),
    (
        ["profile", "--methods", "bicubic", "--reference", "lanczos"],
        "'lanczos' is not among --methods",
    ),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, cli, capsys, argv, message):
    out = tmp_path / "o"
    assert cli(*argv, "--out", out, "profile.enabled=false") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("harness: error: ") and message in err[0], err[0]
    assert not out.exists()


def test_argparse_errors_are_one_line_too(capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as e:
        main(["profile", "--runs", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "harness profile: error: argument --runs: invalid int value: 'x' "
        "(see harness profile --help)"
    ]


def test_weights_fetch_accepts_names_that_need_no_weights(cli, capsys):
    assert cli("weights", "fetch", "psnr", "ssim", "bicubic") == 0
    assert "note: psnr, ssim, bicubic need no weight files" in capsys.readouterr().out
    assert cli("weights", "fetch", "psnr", "lpips", "--dry-run") == 0
    text = capsys.readouterr().out
    assert "note: psnr needs no weight files" in text and "LPIPS_v0.1_alex" in text
    assert cli("weights", "fetch", "psnr", "lpipz") == 2
    assert "nothing named 'lpipz' (did you mean lpips" in capsys.readouterr().err
