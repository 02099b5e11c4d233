"""`metalnet image build-demo`: the bootable demo disk image a lab deploys to nodes."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Disk images nodes boot from.", no_args_is_help=True)


@app.command("build-demo")
def build_demo(
    output: Path = typer.Option(..., "--output", help="File to write the raw disk image to."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    cache: Path | None = typer.Option(None, help="Cache directory (default: user cache)."),
) -> None:
    """Build a small BIOS-bootable raw disk image: syslinux, Debian's cloud kernel and a
    busybox init that takes a DHCP address on eth0 and opens a root shell on ttyS0.

    Unchanged inputs reuse the cached image. Example:
    metalnet image build-demo --output /var/lib/metalnet/images/demo.img
    """
    from metalnet.boot.demo_image import build_demo_image

    image = build_demo_image(output, cache)
    if as_json:
        fields = {**image.__dict__, "path": str(image.path), "seconds": round(image.seconds, 2)}
        typer.echo(json.dumps(fields, indent=2))
        return
    how = "reused from the cache" if image.cached else "built"
    typer.echo(
        f"{how} in {image.seconds:.1f}s: {image.path} ({image.size_bytes} bytes, "
        f"Linux {image.kernel_version}, sha256 {image.sha256})"
    )
