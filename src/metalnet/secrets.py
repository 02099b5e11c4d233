"""Secrets at rest: switch and BMC passwords are stored encrypted, never in clear.

One column type (`EncryptedText`) is the only place that encrypts and decrypts, so no
code path can write a password in clear. Keys are Fernet keys (AES-128-CBC + HMAC,
`cryptography`'s recipe) held in a `Keyring`: the newest key encrypts, every older one
still decrypts (MultiFernet), which is what makes `metalnet secrets rotate` safe to
interrupt. Where the keys come from, first match wins:

1. METALNET_SECRET_KEY: one key, or several separated by commas (newest first);
2. the `secret_key_file` setting: one key a line, newest first;
3. `secret.key` in the user's data directory, created (mode 0600) on first use.

Each engine carries its keyring on its dialect (`attach`), which is what the column
type sees when it binds or reads a value.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import platformdirs
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Engine, Text, column, select, table, update
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from metalnet.errors import ConfigError

ENV_SECRET_KEY = "METALNET_SECRET_KEY"
# Every Fernet token starts with its version byte 0x80, base64url-encoded as "gAAAAA".
TOKEN_PREFIX = "gAAAAA"


def default_key_file() -> Path:
    """`secret.key` beside the embedded database, in the user's data directory."""
    return Path(platformdirs.user_data_dir("metalnet")) / "secret.key"


def _parse_keys(text: str, source: str) -> list[Fernet]:
    keys = [k.strip() for k in text.replace(",", "\n").splitlines() if k.strip()]
    if not keys:
        raise ConfigError(f"secret key {source}: holds no key")
    try:
        return [Fernet(k) for k in keys]
    except ValueError:
        raise ConfigError(
            f"secret key {source}: not a Fernet key (32 url-safe base64 bytes)"
        ) from None


def _write_private(path: Path, keys: list[str]) -> Path:
    """The keys in a new file beside `path`, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(keys) + "\n")
    os.chmod(tmp, 0o600)
    return tmp


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file atomically."""
    os.replace(_write_private(path, keys), path)


def create_key_file(path: Path) -> None:
    """A key file with one fresh key, unless one exists: two processes starting at once
    must not each write their own key (one would lose what it encrypted), so the file
    appears atomically by a hard link that fails when the name is taken."""
    tmp = _write_private(path, [Fernet.generate_key().decode()])
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


class Keyring:
    """The keys of one installation, loaded (or the default file created) on first use."""

    def __init__(self, key_file: str | None = None) -> None:
        self.key_file = key_file
        self._fernet: MultiFernet | None = None
        self._lock = threading.Lock()

    @property
    def from_env(self) -> bool:
        return bool(os.environ.get(ENV_SECRET_KEY))

    @property
    def path(self) -> Path:
        """The key file in use (the configured one, else the default)."""
        return Path(self.key_file) if self.key_file else default_key_file()

    @property
    def source(self) -> str:
        return ENV_SECRET_KEY if self.from_env else str(self.path)

    def _load(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = MultiFernet(self._read())
            return self._fernet

    def _read(self) -> list[Fernet]:
        if self.from_env:
            return _parse_keys(os.environ[ENV_SECRET_KEY], f"in {ENV_SECRET_KEY}")
        path = self.path
        if not path.exists():
            if self.key_file:
                raise ConfigError(f"config key secret_key_file: {path} does not exist")
            create_key_file(path)
        try:
            return _parse_keys(path.read_text(), f"file {path}")
        except OSError as exc:
            raise ConfigError(f"secret key file {path}: {exc.strerror}") from None

    def check(self) -> None:
        """Load the keys now (creating the default file), so a bad key is reported when
        the database is opened rather than wrapped in the error of a statement."""
        self._load()

    def encrypt(self, clear: str) -> str:
        return self._load().encrypt(clear.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The clear value; keys are re-read once when none fits, so a process that was
        running during `secrets rotate` picks up the new key instead of failing."""
        try:
            return self._load().decrypt(token.encode()).decode()
        except InvalidToken:
            self._forget()
        try:
            return self._load().decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"a stored secret cannot be decrypted with the key(s) from {self.source}: "
                "the key it was encrypted with is missing"
            ) from None

    def rotate_token(self, token: str) -> str:
        """The same secret under the newest key."""
        try:
            return self._load().rotate(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"a stored secret cannot be decrypted with the key(s) from {self.source}"
            ) from None

    def add_new_key(self) -> None:
        """Put a fresh key first in the key file; the old keys stay (they still decrypt)."""
        if self.from_env:
            return
        old = [line.strip() for line in self.path.read_text().splitlines() if line.strip()]
        write_key_file(self.path, [Fernet.generate_key().decode(), *old])
        self._forget()

    def _forget(self) -> None:
        with self._lock:
            self._fernet = None


# Every column that holds an EncryptedText value, as (table, column).
SECRET_COLUMNS = (("switches", "password"), ("nodes", "bmc_password"))


def reencrypt_all(engine: Engine) -> int:
    """Re-encrypt every stored secret under the newest key, in one transaction.

    Reads the raw tokens (not through EncryptedText), so nothing is ever held in clear
    longer than one `MultiFernet.rotate` call."""
    keyring = keyring_of(engine.dialect)
    count = 0
    with engine.begin() as connection:
        for table_name, column_name in SECRET_COLUMNS:
            raw = table(table_name, column("id"), column(column_name, Text))
            secret = raw.c[column_name]
            rows = connection.execute(select(raw.c.id, secret).where(secret.is_not(None))).all()
            for row_id, token in rows:
                new = keyring.rotate_token(token)
                connection.execute(update(raw).where(raw.c.id == row_id).values({secret: new}))
                count += 1
    return count


def attach(engine: Engine, keyring: Keyring) -> None:
    """Make `keyring` the one this engine's secret columns use."""
    engine.dialect.metalnet_keyring = keyring  # type: ignore[attr-defined]


def keyring_of(dialect: Dialect) -> Keyring:
    """The dialect's keyring; an engine nobody attached one to uses the default keys."""
    keyring = getattr(dialect, "metalnet_keyring", None)
    if keyring is None:
        keyring = Keyring()
        dialect.metalnet_keyring = keyring  # type: ignore[attr-defined]
    return keyring


class EncryptedText(TypeDecorator[str]):
    """A text column stored as a Fernet token: the one place secrets are (de)crypted."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else keyring_of(dialect).encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else keyring_of(dialect).decrypt(value)
