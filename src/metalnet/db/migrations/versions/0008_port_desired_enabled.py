"""a port may be wanted disabled (a node that may still run a tenant's OS)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("switch_ports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("desired_enabled", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("switch_ports", schema=None) as batch_op:
        batch_op.drop_column("desired_enabled")
