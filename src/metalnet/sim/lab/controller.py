"""Running the controller as a real `metalnet serve` process, as an operator would.

`metalnet lab up` runs one; the fault campaign runs several on one PostgreSQL. Both
write a TOML configuration file and start `python -m metalnet --config FILE serve`
with its output in a log file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def write_config(path: Path, **values: str | float | int) -> Path:
    """A TOML configuration file with `values` (strings quoted, numbers as they are)."""
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
    return path


def serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """A `metalnet serve` process on `config`, appending its output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "metalnet", "--config", str(config), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
