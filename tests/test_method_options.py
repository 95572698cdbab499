"""A method's options are checked when the config is composed: ``--dry-run`` refuses them, and
a run of several methods stops before the first one upscales anything."""

from __future__ import annotations

import time

import pytest

from harness.methods import METHODS


@pytest.mark.parametrize(
    "method, override, names",
    [
        ("swinir", "method.size=xl", "method.size"),
        ("s3diff", "method.color_fix=foo", "method.color_fix"),
        ("osediff", "method.prompt=foo", "method.prompt"),
        ("sinsr", "method.vq_attention=foo", "method.vq_attention"),
        ("realesrgan", "method.scale=2", "method.scale"),
        ("swinir", "method.scale=2", "method.scale"),
        ("femasr", "method.scale=2", "method.scale"),
        ("adcsr", "method.scale=8", "method.scale"),
    ],
)
def test_dry_run_refuses_a_bad_method_option(method, override, names, cli, capsys):
    """Mutation caught: validate_run not calling the methods' own checks (exit 0)."""
    assert cli("run", "--methods", method, "--dry-run", override) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0] and "Traceback" not in err[0], err


def test_a_bad_option_of_the_last_method_stops_the_run_before_any_work(
    cache_dir, tmp_path, cli, capsys
):
    """``bicubic,s3diff`` with a wrong S3Diff colour fix: before, bicubic upscaled and was
    profiled first. Now: exit 2 within seconds, no run folder, nothing in the SR cache."""
    out = tmp_path / "o"
    before = set(cache_dir.rglob("*"))
    start = time.perf_counter()
    rc = cli("run", "--methods", "bicubic,s3diff", "--out", out, "method.s3diff.color_fix=foo")
    elapsed = time.perf_counter() - start
    assert rc == 2
    line = capsys.readouterr().err.strip()
    assert "method.color_fix: 'foo'" in line and "\n" not in line, line
    assert not out.exists()
    assert {p for p in cache_dir.rglob("*") if "sr" in p.parts} <= before
    print(f"refused after {elapsed:.2f} s")  # seconds, not a timing assertion


def test_fixed_scale_cards_state_their_scales():
    """Every learned method runs at the scale of its network; interpolation at any scale."""
    for name in METHODS.names():
        card = METHODS.get(name).card
        if card.family == "classical":
            assert card.scales is None, name
        else:
            assert card.scales == (card.scale,), name


def test_a_card_whose_scale_is_not_among_its_scales_is_refused():
    from harness.methods.base import MethodCard

    with pytest.raises(ValueError, match="not among scales"):
        MethodCard("x", "X", "p", "l", scale=2, scales=(4,), family="gan")
