import pytest

from harness.errors import HarnessError
from harness.registry import Registry


def test_register_get_and_names():
    reg: Registry[int] = Registry("thing")
    reg.register("b")(2)
    reg.register("a")(1)
    assert reg.get("a") == 1
    assert reg.names() == ["a", "b"]
    assert "b" in reg and "c" not in reg


def test_unknown_name_lists_known_ones():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(HarnessError, match=r"unknown thing 'zz' \(known: a\)"):
        reg.get("zz")


def test_double_registration_is_refused():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(2)
