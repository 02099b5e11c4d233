"""Debian packages as build inputs: resolved with apt-cache, fetched with `apt-get
download`, checked against the archive's SHA-256 and unpacked with `dpkg-deb -x`.

Nothing is installed on the host, so the boot images build without root and from
exactly the package versions apt names (the versions are part of each build's key).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metalnet.errors import InputError, MetalnetError

COMMAND_TIMEOUT_SECONDS = 600


class BuildError(MetalnetError):
    """A boot image could not be built; the message says which tool or input failed."""


@dataclass(frozen=True)
class Deb:
    """One Debian package at the version apt would install, with its archive checksum."""

    package: str
    version: str
    sha256: str


def file_digest(path: Path) -> bytes:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a build tool; its failure becomes one BuildError line with its stderr."""
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
    except FileNotFoundError:
        raise BuildError(f"{argv[0]} is not installed") from None
    if result.returncode != 0:
        raise BuildError(f"{' '.join(argv)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


def resolve_all(cache: Path, packages: Sequence[str]) -> list[Deb]:
    """The packages at the versions apt would install now, in the order asked.

    Asking apt-cache costs seconds; its answer can only change when the package
    lists, dpkg's status or apt's settings change, so it is kept under their
    fingerprint (one file per package list) and a rebuild with nothing changed
    asks nothing.
    """
    names = " ".join(packages)
    saved = cache / f"resolved-{hashlib.sha256(names.encode()).hexdigest()[:16]}.json"
    fingerprint = f"{names} {_apt_fingerprint()}"
    if saved.exists():
        data = json.loads(saved.read_text())
        if data["fingerprint"] == fingerprint:
            return [Deb(**d) for d in data["debs"]]
    debs = [resolve(package) for package in packages]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache, delete=False) as partial:
        json.dump({"fingerprint": fingerprint, "debs": [d.__dict__ for d in debs]}, partial)
    Path(partial.name).replace(saved)  # a build reading it at once sees all of it or none
    return debs


def _apt_fingerprint() -> str:
    roots = (Path("/var/lib/apt/lists"), Path("/etc/apt"), Path("/var/lib/dpkg/status"))
    paths = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*"))]
    stats = [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths if p.is_file()]
    return hashlib.sha256(repr(sorted(stats)).encode()).hexdigest()


def resolve(package: str) -> Deb:
    """The candidate version of `package` (following a kernel metapackage to its image)."""
    fields = _show(package)
    first = fields.get("Depends", "").split(",")[0].split()
    if package.startswith("linux-image-") and first and first[0].startswith("linux-image-"):
        fields = _show(first[0])
    return Deb(fields["Package"], fields["Version"], fields["SHA256"])


def _show(package: str) -> dict[str, str]:
    try:
        text = run(["apt-cache", "show", "--no-all-versions", package])
    except BuildError:
        raise InputError(f"invalid package {package!r}: apt-cache does not know it") from None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields[key] = value
    if "SHA256" not in fields:
        raise BuildError(f"apt-cache knows no package {package} (run apt-get update)")
    return fields


def fetch(deb: Deb, cache: Path) -> Path:
    """The .deb file, downloaded once into `cache` and checked against the archive."""
    path = cache / f"{deb.package}_{deb.version}.deb"
    if path.exists() and file_digest(path).hex() == deb.sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        os.chmod(tmp, 0o755)  # apt's sandbox user must be able to write here
        run(["apt-get", "download", "-q", f"{deb.package}={deb.version}"], cwd=Path(tmp))
        (downloaded,) = Path(tmp).glob("*.deb")
        if file_digest(downloaded).hex() != deb.sha256:
            raise BuildError(f"{downloaded.name}: SHA-256 differs from the archive's")
        downloaded.replace(path)
    return path


def unpack(deb_file: Path, cache: Path) -> Path:
    """The package's files, extracted once next to the .deb.

    Builds may share a cache at once: each extracts into a directory of its own and
    renames it into place; one that finds the place taken meanwhile keeps the
    finished copy (the same .deb's files).
    """
    target = cache / deb_file.stem
    if not target.is_dir():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            run(["dpkg-deb", "-x", str(deb_file), tmp])
            try:
                Path(tmp).rename(target)
            except OSError:
                if not target.is_dir():
                    raise
    return target


def unpacked(deb: Deb, cache: Path) -> Path:
    """The package's files: fetched, checked and extracted once into `cache`."""
    return unpack(fetch(deb, cache), cache)
