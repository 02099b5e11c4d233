"""The API over real HTTPS: `serve --tls-cert/--tls-key`, and the remote CLI checking the
server's certificate against `--ca-file` / METALNET_CA_FILE."""

from __future__ import annotations

import httpx
import pytest

from metalnet.agent.runner import ExitCode


def test_remote_cli_over_https_with_the_ca_file(https_server, cli, monkeypatch) -> None:
    monkeypatch.setenv("METALNET_TOKEN", https_server.token)
    url, ca = https_server.url, str(https_server.ca_file)
    listed = cli("--url", url, "--ca-file", ca, "project", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert '"name": "acme"' in listed.stdout
    monkeypatch.setenv("METALNET_CA_FILE", ca)
    made = cli("--url", url, "project", "create", "beta")
    assert made.exit_code == 0, made.output


def test_an_unknown_certificate_is_refused(https_server, cli, monkeypatch) -> None:
    monkeypatch.setenv("METALNET_TOKEN", https_server.token)
    refused = cli("--url", https_server.url, "project", "list")
    assert refused.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_plain_http_is_not_answered(https_server) -> None:
    plain = https_server.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/v1/projects", timeout=5).raise_for_status()


def test_tls_options_go_together(run, tmp_path) -> None:
    alone = run("serve", "--tls-cert", str(tmp_path / "c.pem"))
    assert alone.exit_code == 2 and "--tls-cert and --tls-key go together" in alone.stderr
    missing = run("serve", "--tls-cert", str(tmp_path / "c"), "--tls-key", str(tmp_path / "k"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_agent_reaches_an_https_controller_with_the_ca_file(
    https_server, cli, tmp_path, caplog
) -> None:
    """The agent's TLS handshake succeeds with --ca-file (its made-up token is then
    refused: AUTH); without it every request fails certificate verification."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    args = ("agent", "--controller", https_server.url, "--node", "n1", "--token", "mna_wrong",
            "--disk", str(disk), "--wait", "2")  # fmt: skip
    trusted = cli(*args, "--ca-file", str(https_server.ca_file))
    assert trusted.exit_code == ExitCode.AUTH, trusted.output
    assert "CERTIFICATE_VERIFY_FAILED" not in caplog.text
    untrusted = cli(*args)
    assert untrusted.exit_code == ExitCode.NO_TASK, untrusted.output
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
