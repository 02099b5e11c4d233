"""Choosing a driver from a BMC URL, validating BMC URLs, and what errors say."""

from __future__ import annotations

import re

import pytest

from metalnet.power import (
    BmcTarget,
    BmcUnreachable,
    PowerError,
    check_bmc_url,
    driver_for,
)
from metalnet.power.ipmi import IpmiDriver
from metalnet.power.redfish import RedfishDriver, split_redfish_url


@pytest.mark.parametrize(
    ("url", "driver_cls"),
    [
        ("redfish+http://127.0.0.1:8000/redfish/v1/Systems/n1", RedfishDriver),
        ("redfish+https://bmc.example:443/redfish/v1/Systems/1", RedfishDriver),
        ("redfish://bmc.example", RedfishDriver),
        ("ipmi://127.0.0.1:6230", IpmiDriver),
        ("ipmi://[::1]", IpmiDriver),
    ],
)
def test_driver_is_chosen_by_url_scheme(url: str, driver_cls: type) -> None:
    with driver_for(BmcTarget("n1", url, "admin", "pw"), timeout=2) as driver:
        assert type(driver) is driver_cls
        assert driver.timeout == 2


def test_unknown_scheme_is_a_value_error_naming_the_url() -> None:
    url = "snmp://127.0.0.1:161"
    with pytest.raises(ValueError, match=re.escape(url)):
        driver_for(BmcTarget("n1", url, "admin", "pw"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/redfish/v1", "unknown scheme"),
        ("redfish+http:///redfish/v1/Systems/n1", "no host"),
        ("ipmi://127.0.0.1:0", "port must be 1-65535"),
        ("ipmi://127.0.0.1:70000", "port must be 1-65535"),
        ("ipmi://127.0.0.1:x", "port must be 1-65535"),
        ("redfish+http://admin:pw@127.0.0.1/", "credentials"),
        ("ipmi://127.0.0.1:623/extra", "takes no path"),
        ("redfish+http://127.0.0.1/?verify=0", "no query"),
        ("ipmi://127.0.0.1 :623", "whitespace"),
    ],
)
def test_bad_bmc_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        check_bmc_url(url)
    assert repr(url) in str(caught.value)


def test_good_bmc_url_is_returned_unchanged() -> None:
    url = "redfish+https://10.0.0.5:8443/redfish/v1/Systems/System.Embedded.1"
    assert check_bmc_url(url) == url


@pytest.mark.parametrize(
    ("url", "base", "path"),
    [
        ("redfish+http://h:8000/redfish/v1/Systems/n1", "http://h:8000", "/redfish/v1/Systems/n1"),
        ("redfish+https://h/redfish/v1/Systems/n1/", "https://h", "/redfish/v1/Systems/n1"),
        ("redfish://h:443", "https://h:443", None),
    ],
)
def test_redfish_url_splits_into_service_and_system(url: str, base: str, path: str | None) -> None:
    assert split_redfish_url(url) == (base, path)


def test_target_repr_hides_the_password() -> None:
    target = BmcTarget("n1", "ipmi://127.0.0.1", "admin", "hunter2")
    assert "hunter2" not in repr(target)
    assert "admin" in repr(target)


def test_error_names_node_and_bmc_without_credentials() -> None:
    error = BmcUnreachable("n1", "redfish+http://root:hunter2@10.0.0.5/redfish/v1", "timed out")
    assert isinstance(error, PowerError)
    assert str(error) == "node n1 BMC redfish+http://10.0.0.5/redfish/v1: timed out"


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        driver_for(BmcTarget("n1", "ipmi://127.0.0.1", "admin", "pw"), timeout=0)
