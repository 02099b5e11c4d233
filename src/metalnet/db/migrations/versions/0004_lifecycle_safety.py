"""lifecycle safety: 64-bit byte counters, uniqueness across tenants, remembered
quarantine, erase of newly enrolled nodes

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LIVE = "state IN ('building', 'active', 'deleting', 'error')"


def upgrade() -> None:
    with op.batch_alter_table("agent_tasks", schema=None) as batch_op:
        batch_op.alter_column("done_bytes", type_=sa.BigInteger(), existing_type=sa.Integer())
        batch_op.alter_column("total_bytes", type_=sa.BigInteger(), existing_type=sa.Integer())
        batch_op.alter_column("instance_id", nullable=True, existing_type=sa.Integer())

    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_switches_host_port", ["host", "port"])

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_nodes_bmc_url", ["bmc_url"])
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "quarantine_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("bmc_url", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_marks_mac", "quarantine_marks", ["mac"])
    op.create_index("ix_quarantine_marks_bmc_url", "quarantine_marks", ["bmc_url"])

    op.create_index(
        "uq_instances_live_name",
        "instances",
        ["project_id", "name"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_instances_live_name", table_name="instances")
    op.drop_index("ix_quarantine_marks_bmc_url", table_name="quarantine_marks")
    op.drop_index("ix_quarantine_marks_mac", table_name="quarantine_marks")
    op.drop_table("quarantine_marks")

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("lease_expires")
        batch_op.drop_column("lease_owner")
        batch_op.drop_constraint("uq_nodes_bmc_url", type_="unique")

    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.drop_constraint("uq_switches_host_port", type_="unique")

    with op.batch_alter_table("agent_tasks", schema=None) as batch_op:
        batch_op.alter_column("instance_id", nullable=False, existing_type=sa.Integer())
        batch_op.alter_column("total_bytes", type_=sa.Integer(), existing_type=sa.BigInteger())
        batch_op.alter_column("done_bytes", type_=sa.Integer(), existing_type=sa.BigInteger())
