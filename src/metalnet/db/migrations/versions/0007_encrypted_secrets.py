"""encrypted secrets, switch host keys, project quotas

Switch and BMC passwords become Fernet tokens (text); the clear values already stored
are encrypted here, with the keys of the engine running the migration.

Revision ID: 0007
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from metalnet.secrets import SECRET_COLUMNS, TOKEN_PREFIX, keyring_of

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def _recode(table: str, column: str, encrypt: bool) -> None:
    bind = op.get_bind()
    keyring = keyring_of(bind.dialect)
    rows = bind.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()
    for row_id, value in rows:
        if value is None or value.startswith(TOKEN_PREFIX) == encrypt:
            continue
        new = keyring.encrypt(value) if encrypt else keyring.decrypt(value)
        bind.execute(
            sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :id"), {"v": new, "id": row_id}
        )


def upgrade() -> None:
    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.alter_column("password", type_=sa.Text(), existing_type=sa.String(256))
        batch_op.add_column(sa.Column("host_key", sa.String(length=80), nullable=True))
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.alter_column("bmc_password", type_=sa.Text(), existing_type=sa.String(256))
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_networks", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quota_instances", sa.Integer(), nullable=True))
    for table, column in SECRET_COLUMNS:
        _recode(table, column, encrypt=True)


def downgrade() -> None:
    for table, column in SECRET_COLUMNS:
        _recode(table, column, encrypt=False)
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("quota_instances")
        batch_op.drop_column("quota_networks")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.alter_column("bmc_password", type_=sa.String(256), existing_type=sa.Text())
    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.drop_column("host_key")
        batch_op.alter_column("password", type_=sa.String(256), existing_type=sa.Text())
