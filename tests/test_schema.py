"""The typed config schema: dataclasses for run/eval/profile, generic checks for method and
dataset nodes (keys from their own YAML, types from its defaults)."""

import pytest

from harness.config import CONFIG_DIR, compose_eval, compose_run, group_options, yaml_defaults
from harness.errors import HarnessError
from harness.schema import (
    MethodNode,
    ProfileConfig,
    RunConfig,
    check_dataclass,
    check_node,
    defaults,
)


def test_every_shipped_method_and_dataset_config_passes_its_own_schema():
    """A new configs/method/*.yaml or configs/dataset/*.yaml is covered with no schema code."""
    for m in group_options("method"):
        cfg = compose_run([f"methods=[{m}]", "datasets=[embedded]"])
        assert cfg.method[m].name == m
    for d in group_options("dataset"):
        cfg = compose_run(["methods=[bicubic]", f"datasets=[{d}]"])
        assert cfg.dataset[d].name == d


def test_run_yaml_and_schema_agree():
    """Every key run.yaml sets has the default the schema documents (mutation caught: a
    schema default drifting from the YAML)."""
    yaml = yaml_defaults(None, "run")
    schema = defaults(RunConfig)
    for key in ("methods", "datasets", "out", "device", "dtype", "seed", "force", "strict",
                "metrics_autocast", "metric_batch_size"):  # fmt: skip
        assert yaml[key] == schema[key], key
    assert yaml["profile"] == defaults(ProfileConfig)


def test_a_new_method_node_is_typed_from_its_yaml_defaults():
    yaml = {"name": "newsr", "scale": 4, "batch_size": 1, "steps": 4, "guidance": 1.5,
            "ckpt": None, "prompt": "${oc.env:X,''}", "tags": ["a"]}  # fmt: skip
    good = dict(yaml, steps=8, guidance=2, ckpt="/w.pt", prompt="x", tags=[])
    check_node(good, yaml, MethodNode, "method.newsr")
    bad = [
        ({"steps": 1.5}, "method.newsr.steps=1.5: must be an integer"),
        ({"guidance": "high"}, "method.newsr.guidance='high': must be a number"),
        ({"steps": True}, "method.newsr.steps=true: must be an integer"),
        ({"tags": "a"}, "method.newsr.tags='a': must be a list, e.g. [a,b]"),
        ({"scale": 0}, "method.newsr.scale=0: must be >= 1"),
        ({"batch_size": -1}, "method.newsr.batch_size=-1: must be >= 1"),
        ({"guidence": 1.0}, "unknown key 'method.newsr.guidence' (did you mean "
                            "method.newsr.guidance?)"),
    ]  # fmt: skip
    for change, message in bad:
        with pytest.raises(HarnessError) as e:
            check_node(dict(good, **change), yaml, MethodNode, "method.newsr")
        assert str(e.value) == message


def test_dataset_type_is_checked_against_the_registry():
    with pytest.raises(HarnessError, match="unknown type of dataset.embedded 'folders'"):
        compose_run(["dataset.type=folders"])


def test_dataclass_check_types_and_ranges():
    check_dataclass(defaults(ProfileConfig), ProfileConfig, "profile")
    with pytest.raises(HarnessError, match=r"profile.runs=0 \(--runs\): must be >= 1"):
        check_dataclass({"runs": 0}, ProfileConfig, "profile")
    check_dataclass({"runs": None, "max_time": 1}, ProfileConfig, "profile")  # int for float
    with pytest.raises(HarnessError, match="must be one of fp32, fp16, bf16"):
        check_dataclass({"dtype": "fp8"}, RunConfig)
    with pytest.raises(HarnessError, match="each item must be a string"):
        check_dataclass({"methods": [["a"]]}, RunConfig)


def test_eval_config_checks():
    with pytest.raises(HarnessError, match="needs both --sr DIR and --hr DIR"):
        compose_eval(["sr=a"])
    with pytest.raises(HarnessError, match=r"scale=0: must be >= 1"):
        compose_eval(["sr=a", "hr=b", "scale=0"])
    with pytest.raises(HarnessError, match=r"unknown key 'scal' \(did you mean scale\?\)"):
        compose_eval(["sr=a", "hr=b", "scal=4"])


def test_folder_template_is_not_a_dataset_choice():
    assert (CONFIG_DIR / "dataset" / "_folder.yaml").is_file()
    assert "_folder" not in group_options("dataset")
    with pytest.raises(HarnessError, match="unknown dataset '_folder'"):
        compose_run(["datasets=[_folder]"])
