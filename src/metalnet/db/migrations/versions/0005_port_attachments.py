"""port attachments owned outside metalnet; switch chassis MAC

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "port_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("port_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("vlan", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["port_id"], ["switch_ports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("port_id"),
    )
    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chassis_mac", sa.String(length=17), nullable=True))
        batch_op.create_unique_constraint("uq_switches_chassis_mac", ["chassis_mac"])


def downgrade() -> None:
    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.drop_constraint("uq_switches_chassis_mac", type_="unique")
        batch_op.drop_column("chassis_mac")
    op.drop_table("port_attachments")
