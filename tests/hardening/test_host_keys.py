"""Switch SSH host keys: recorded on `switch add`, checked before every login, changed
only by `switch rekey` (audited). Fingerprints are checked against asyncssh's own
(`SSHKey.get_fingerprint("md5")`), an implementation independent of ours."""

from __future__ import annotations

import json

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalnet.errors import InputError
from metalnet.sim.switch.device import SimSwitch
from metalnet.sim.switch.server import default_host_key
from metalnet.switches import hostkeys
from metalnet.switches.hostkeys import Verdict, decide

OTHER_KEY = asyncssh.generate_private_key("ssh-ed25519")


def key_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


@given(st.lists(st.sampled_from(["MD5:aa", "MD5:bb", "MD5:cc"]), min_size=1, max_size=12))
def test_the_first_key_seen_is_the_only_one_accepted(presented) -> None:
    """Folding the rule over any sequence of sessions: the first key is learned, every
    later session is accepted exactly when it presents that same key."""
    recorded = None
    for i, key in enumerate(presented):
        verdict = decide(recorded, key)
        if i == 0:
            assert verdict is Verdict.LEARN
            recorded = key
        else:
            assert (verdict is Verdict.ACCEPT) == (key == presented[0])
            assert verdict in (Verdict.ACCEPT, Verdict.REFUSE)


def test_key_lines_and_fingerprints_normalize_alike() -> None:
    expected = OTHER_KEY.get_fingerprint("md5")
    line = key_line(OTHER_KEY)
    assert hostkeys.normalize(line) == expected
    assert hostkeys.normalize(f"[192.0.2.10]:830 {line}") == expected  # known_hosts form
    assert hostkeys.normalize(expected) == expected
    assert hostkeys.normalize(expected.removeprefix("MD5:").upper()) == expected
    with pytest.raises(InputError, match="SHA256 fingerprints cannot be checked"):
        hostkeys.normalize(OTHER_KEY.get_fingerprint("sha256"))
    with pytest.raises(InputError, match="invalid host key 'nonsense'"):
        hostkeys.normalize("nonsense")


@pytest.fixture
def sw():
    with SimSwitch.running("tor1", ports=8, username="netconf", password="pw") as switch:
        yield switch


def _add(run, sw, *extra: str):
    return run(
        "switch", "add", "tor1", "--driver", "junos", "--address", f"{sw.host}:{sw.port}",
        "--username", "netconf", "--password", "pw", *extra,
    )  # fmt: skip


def test_add_reads_and_shows_the_key_the_switch_presents(run, sw) -> None:
    added = _add(run, sw)
    assert added.exit_code == 0, added.output
    expected = default_host_key().get_fingerprint("md5")
    assert f"host key {expected} (read from {sw.host}:{sw.port} now" in added.stdout
    shown = json.loads(run("switch", "show", "tor1", "--json").stdout)
    assert shown["host_key"] == expected


def test_add_records_a_given_key_without_contacting(run, sw) -> None:
    added = _add(run, sw, "--host-key", key_line(OTHER_KEY))
    assert added.exit_code == 0, added.output
    assert f"host key {OTHER_KEY.get_fingerprint('md5')} (given)" in added.stdout


def test_a_bad_host_key_changes_nothing(run, sw) -> None:
    bad = _add(run, sw, "--host-key", "SHA256:abc")
    assert bad.exit_code == 2 and "invalid host key 'SHA256:abc'" in bad.stderr
    assert "tor1" not in run("switch", "list").stdout


def test_unreachable_switch_is_learned_at_first_connection(run) -> None:
    added = run(
        "switch", "add", "gone", "--driver", "junos", "--address", "127.0.0.1:9",
        "--username", "u", "--password", "p",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "host key - (not read now" in added.stdout


def test_first_use_records_then_holds_the_key(db) -> None:
    from metalnet import inventory

    with db.session() as s:
        inventory.add_switch(s, "tor1", "junos", "127.0.0.1:830", "u", "p")
    check = hostkeys.HostKeyCheck(db, "tor1")
    assert check("127.0.0.1", "aa:" * 15 + "aa") is True  # learned
    assert check("127.0.0.1", "aa:" * 15 + "aa") is True  # the same again
    assert check("127.0.0.1", "bb:" * 15 + "bb") is False
    assert check.refusal is not None
    message = str(check.refusal)
    assert message.startswith("switch tor1: host key mismatch: recorded MD5:aa:")
    assert "presented MD5:bb:" in message and "metalnet switch rekey tor1" in message


def test_rekey_reads_the_new_key_and_is_audited(run, sw) -> None:
    assert _add(run, sw, "--host-key", key_line(OTHER_KEY)).exit_code == 0
    rekeyed = run("switch", "rekey", "tor1")
    assert rekeyed.exit_code == 0, rekeyed.output
    new = default_host_key().get_fingerprint("md5")
    assert f"{OTHER_KEY.get_fingerprint('md5')} -> {new}" in rekeyed.stdout
    audit = json.loads(run("audit", "--json").stdout)
    assert any(e["action"] == "switch rekey" and e["ok"] for e in audit)
    given = run("switch", "rekey", "tor1", "--host-key", key_line(OTHER_KEY))
    assert given.exit_code == 0 and f"{new} -> {OTHER_KEY.get_fingerprint('md5')}" in given.stdout


def test_a_switch_presenting_another_key_is_refused_until_rekeyed(run, sw) -> None:
    """Through the switch service over real SSH: the wrong key ends the connection before
    login, with one line naming the switch and both fingerprints; rekey lets it in."""
    assert _add(run, sw, "--host-key", key_line(OTHER_KEY)).exit_code == 0
    refused = run("switch", "ports", "tor1")
    assert refused.exit_code != 0
    recorded = OTHER_KEY.get_fingerprint("md5")
    presented = default_host_key().get_fingerprint("md5")
    assert (
        f"switch tor1: host key mismatch: recorded {recorded}, presented {presented}"
        in refused.stderr
    )
    assert len(refused.stderr.strip().splitlines()) == 1
    assert run("switch", "rekey", "tor1").exit_code == 0
    accepted = run("switch", "ports", "tor1")
    assert accepted.exit_code == 0, accepted.output


def test_a_restarted_switch_with_a_new_key_is_refused(run, tmp_path) -> None:
    """The same address answering with another key (a re-imaged switch, or an impostor)."""
    with SimSwitch.running("tor1", ports=8, username="netconf", password="pw") as first:
        assert _add(run, first).exit_code == 0  # learned from the switch
        assert run("switch", "ports", "tor1").exit_code == 0
        port = first.port
    with SimSwitch.running(
        "tor1", ports=8, username="netconf", password="pw", port=port, host_key=OTHER_KEY
    ):
        refused = run("switch", "ports", "tor1")
        assert "host key mismatch" in refused.stderr
        assert f"presented {OTHER_KEY.get_fingerprint('md5')}" in refused.stderr
        assert run("switch", "rekey", "tor1", "--host-key", key_line(OTHER_KEY)).exit_code == 0
        assert run("switch", "ports", "tor1").exit_code == 0
