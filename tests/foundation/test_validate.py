"""Validators: what may reach a switch, a BMC or dnsmasq."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import metalnet
from metalnet.errors import InputError
from metalnet.switches import check_interface
from metalnet.validate import (
    check_cidr,
    check_name,
    check_sha256,
    check_vlan,
    is_digits,
    normalize_mac,
)


@pytest.mark.parametrize(
    "raw", ["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff", " AA:bb:CC:dd:EE:ff "]
)
def test_mac_forms_normalise_to_lower_colon(raw: str) -> None:
    assert normalize_mac(raw) == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("aa:bb:cc:dd:ee", "expected"),
        ("aa:bb-cc:dd:ee:ff", "expected"),
        ("gg:bb:cc:dd:ee:ff", "expected"),
        ("00:00:00:00:00:00", "all-zero"),
        ("ff:ff:ff:ff:ff:ff", "broadcast"),
        ("01:00:5e:00:00:01", "multicast"),
        ("aa:bb:cc\n:dd:ee:ff", "expected"),
    ],
)
def test_bad_macs_are_refused_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(InputError, match=why) as info:
        normalize_mac(raw)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize("raw", [0, 4095, 5000, -1, "0", "4095", "abc", "1.5", "", True])
def test_bad_vlans_are_refused(raw: object) -> None:
    with pytest.raises(InputError, match="VLAN"):
        check_vlan(raw)


@pytest.mark.parametrize("raw", [1, 4094, "100"])
def test_good_vlans(raw: object) -> None:
    assert check_vlan(raw) == int(raw)


@pytest.mark.parametrize(
    "name",
    ["ge-0/0/1", "xe-0/1/2:3", "et-1/0/47", "mge-0/0/0", "ae0", "ae127"],
)
def test_junos_interface_names_accepted(name: str) -> None:
    assert check_interface("junos", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "ge-0/0/1;",
        "ge-0/0/1 { disable; }",
        "ge-0/0/1\ndelete interfaces",
        'ge-0/0/1"',
        "ge-0/0/1 ",
        "<ge-0/0/1>",
        "ae128",
        "fe-0/0/1",
        "ge-0/0",
        "",
    ],
)
def test_junos_interface_injection_refused(name: str) -> None:
    with pytest.raises(InputError, match="not a Junos port name"):
        check_interface("junos", name)


@pytest.mark.parametrize("name", ["Acme", "a b", "a;b", "-x", "x" * 64, "", "ä"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InputError, match="invalid project name"):
        check_name(name, "project name")


def test_cidr_host_bits_are_named() -> None:
    with pytest.raises(InputError, match=r"host bits set \(did you mean 10.0.0.0/24\?\)"):
        check_cidr("10.0.0.5/24")
    assert str(check_cidr("10.0.0.0/24")) == "10.0.0.0/24"
    with pytest.raises(InputError, match="not an IPv4 network"):
        check_cidr("10.0.0.0/33")


def test_sha256() -> None:
    assert check_sha256("A" * 64) == "a" * 64
    with pytest.raises(InputError):
        check_sha256("a" * 63)


@given(st.text() | st.from_regex(r"[0-9]{1,6}", fullmatch=True))
def test_a_number_typed_as_text_is_ascii_digits_only(text: str) -> None:
    assert is_digits(text) == (re.fullmatch(r"[0-9]+", text) is not None)
    if is_digits(text):
        assert str(int(text)) == text.lstrip("0") or int(text) == 0


def test_numbers_typed_as_text_are_told_by_one_rule() -> None:
    """Every check of a number written as text goes through `is_digits`: str.isdigit()
    alone takes "¹" (int() then fails) and "٣" (read as 3)."""
    root = Path(metalnet.__file__).parent
    users = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if ".isdigit()" in path.read_text() and path.name != "validate.py"
    )
    assert users == []
