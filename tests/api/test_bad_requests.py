"""Malformed JSON, wrong types, unknown fields, oversize bodies, hostile strings."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalnet.errors import InputError
from metalnet.switches import check_interface
from metalnet.validate import check_name, normalize_mac


@pytest.mark.parametrize(
    ("content", "status", "needle"),
    [
        (b"{not json", 422, "JSON"),
        (b'{"name": 5}', 422, "name"),
        (b'{"name": "c", "extra": 1}', 422, "extra"),
        (b'{"name": "c;rm"}', 400, "invalid project name"),
        (b'{"name": "' + b"x" * 2000 + b'"}', 422, "name"),
        (b'{"name": "' + b"x" * 70_000 + b'"}', 413, "too_large"),
        (b"[]", 422, "body"),
    ],
)
def test_bad_bodies_get_one_json_error(api, content, status, needle) -> None:
    response = api.call(
        "admin",
        "POST",
        "/v1/projects",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert needle in error["message"] or needle in error["code"]


@pytest.mark.parametrize("token_id", ["%C2%B9", "%D9%A3", "1%C2%B2", "-1", "1.0"])
def test_a_token_id_that_is_not_ascii_digits_is_one_json_error(api, token_id) -> None:
    """ "¹" passed `str.isdigit()` and then failed in int(): HTTP 500 (found by the
    OpenAPI fuzz test); "٣" is a digit to int() too, yet no id anyone typed."""
    response = api.call("admin", "DELETE", f"/v1/tokens/{token_id}")
    assert response.status_code == 400, response.text
    assert "expected a number" in response.json()["error"]["message"]


@pytest.mark.parametrize("token_id", ["0", "2147483648", "999999999999999999999999999999"])
def test_a_token_id_no_row_can_have_is_not_found(api, token_id) -> None:
    """Beyond the id column's range the database refused to compare it: HTTP 500
    (found by the OpenAPI fuzz test)."""
    response = api.call("admin", "DELETE", f"/v1/tokens/{token_id}")
    assert response.status_code == 404, response.text
    assert f"unknown token id {token_id}" in response.json()["error"]["message"]


def test_network_vlan_errors_name_the_value(api) -> None:
    for vlan, message in (
        (0, "invalid VLAN 0"),
        (4095, "invalid VLAN 4095"),
        (10, "service"),
        (4000, "parking"),
    ):
        r = api.call(
            "admin",
            "POST",
            "/v1/projects/a/networks",
            json={"name": "v", "cidr": "10.8.0.0/24", "vlan": vlan},
        )
        assert r.status_code == 400 and message in r.json()["error"]["message"]
    r = api.call(
        "admin",
        "POST",
        "/v1/projects/a/networks",
        json={"name": "v", "cidr": "10.8.0.0/24", "vlan": "12"},
    )
    assert r.status_code == 422  # strict: a string is not a VLAN number


def test_hostile_interface_in_node_add_never_stored(api) -> None:
    for port in ("eth1; delete", "eth1\n", "eth{1}", "<eth1>", 'eth1 "x"'):
        r = api.call(
            "admin",
            "POST",
            "/v1/nodes",
            json={
                "name": "evil",
                "mac": "52:54:00:00:00:77",
                "switch": "sw",
                "port": port,
                "bmc_url": "ipmi://127.0.0.1:623",
            },
        )
        assert r.status_code == 400, (port, r.text)
    assert api.call("admin", "GET", "/v1/nodes/evil").status_code == 404


SAFE = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
hostile = st.lists(
    st.sampled_from([*"ge-0/1:;{}[]\"'<>\n\r\t \\äé\u202e\x00ae", "ge-0/0/1", "xe-", "ae12"]),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile)
def test_junos_interface_validator_lets_nothing_structural_through(value: str) -> None:
    try:
        accepted = check_interface("junos", value)
    except InputError:
        return
    assert not set(accepted) & set(";{}[]\"'<> \n\r\t\\\x00")
    assert accepted == value and len(accepted) <= 14


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_name_and_mac_validators_on_arbitrary_text(value: str) -> None:
    with contextlib.suppress(InputError):
        assert set(check_name(value)) <= SAFE
    try:
        mac = normalize_mac(value)
    except InputError:
        return
    assert len(mac) == 17 and set(mac) <= set("0123456789abcdef:")
