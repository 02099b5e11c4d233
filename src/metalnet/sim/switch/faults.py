"""Faults a test (or `metalnet sim switch` flags) can inject into a simulated switch.

Each one-shot fault applies to the next RPC it matches and is then cleared, so a
test states exactly which request misbehaves; commit warnings stay until changed.
`"commit"` matches both Junos `<commit-configuration>` and RFC 6241 `<commit>`;
`"*"` matches any RPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMMIT_RPCS = frozenset({"commit", "commit-configuration"})


def rpc_matches(pattern: str, rpc: str) -> bool:
    """Whether a fault aimed at `pattern` applies to an RPC named `rpc`."""
    return pattern in ("*", rpc) or (pattern == "commit" and rpc in COMMIT_RPCS)


@dataclass
class Faults:
    """The pending faults of one switch. Mutated from any thread; read by the server."""

    refuse_login: bool = False
    commit_error: str | None = None
    drop_rpc: str | None = None
    drop_after: bool = False
    stall_rpc: str | None = None
    stall_seconds: float = 0.0
    commit_warnings: list[str] = field(default_factory=list)

    def fail_next_commit(self, message: str) -> None:
        """The next commit (or commit check) fails with `message`; nothing is applied."""
        self.commit_error = message

    def warn_on_commit(self, *messages: str) -> None:
        """Every successful commit (and commit check) also answers these warnings.

        Real switches do this for licence and deprecation notices: `<rpc-error>`s of
        severity warning inside `<commit-results>`, next to `<commit-success/>` (the
        same place as load warnings in PyEZ's unit-test replies, and "Junos XML
        Protocol: commit-configuration": warnings do not fail the commit). Setting
        it again replaces the list; no messages clears it.
        """
        self.commit_warnings = list(messages)

    def drop_next(self, rpc: str = "commit", *, after: bool = False) -> None:
        """Close the SSH connection on the next `rpc`, before executing it or (`after`)
        after executing it but before replying — a commit that applied but whose
        reply never arrived."""
        self.drop_rpc, self.drop_after = rpc, after

    def stall_next(self, rpc: str, seconds: float) -> None:
        """Keep the session silent for `seconds` before handling the next `rpc`."""
        self.stall_rpc, self.stall_seconds = rpc, seconds

    def take_commit_error(self) -> str | None:
        """The pending commit failure, cleared."""
        message, self.commit_error = self.commit_error, None
        return message

    def take_drop(self, rpc: str) -> bool | None:
        """None if no drop is due for `rpc`; else whether it happens after executing."""
        if self.drop_rpc is None or not rpc_matches(self.drop_rpc, rpc):
            return None
        self.drop_rpc = None
        return self.drop_after

    def take_stall(self, rpc: str) -> float:
        """Seconds to stall before `rpc` (0 when none is due)."""
        if self.stall_rpc is None or not rpc_matches(self.stall_rpc, rpc):
            return 0.0
        self.stall_rpc = None
        return self.stall_seconds
