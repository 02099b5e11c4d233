"""`metalnet ramdisk build`: the provisioning ramdisk (kernel + initramfs with the agent)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The provisioning ramdisk nodes network-boot.", no_args_is_help=True)


@app.command("build")
def build(
    output: Path = typer.Option(..., "--output", help="Directory for vmlinuz and initrd.img."),
    module: list[str] = typer.Option(
        [],
        "--module",
        help="Extra kernel module to load at boot (NIC or disk driver of real servers), "
        "e.g. --module e1000e --module nvme; virtio_net, virtio_blk, virtio_pci always.",
    ),
    kernel_package: str = typer.Option(
        "linux-image-cloud-amd64",
        help="Debian kernel package; linux-image-amd64 has the drivers of physical servers.",
    ),
    cache: Path | None = typer.Option(None, help="Cache directory (default: user cache)."),
) -> None:
    """Build the kernel and initramfs from Debian's packages; reuse them when unchanged.

    Point the controller's `ramdisk_dir` at OUTPUT. Example:
    metalnet ramdisk build --output /var/lib/metalnet/ramdisk
    """
    from metalnet.boot import ramdisk

    modules = (*ramdisk.DEFAULT_MODULES, *module)
    result = ramdisk.build(output, modules, cache, kernel_package)
    how = "reused from the cache" if result.cached else "built"
    typer.echo(
        f"{how} in {result.seconds:.1f}s: {result.kernel} ({result.kernel_bytes} bytes, "
        f"Linux {result.kernel_version}), {result.initrd} ({result.initrd_bytes} bytes), "
        f"modules {' '.join(result.modules)}"
    )
