"""lifecycle safety: 64-bit byte counters, uniqueness across tenants

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

    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_switches_host_port", ["host", "port"])

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_nodes_bmc_url", ["bmc_url"])

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

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint("uq_nodes_bmc_url", type_="unique")

    with op.batch_alter_table("switches", schema=None) as batch_op:
        batch_op.drop_constraint("uq_switches_host_port", type_="unique")

    with op.batch_alter_table("agent_tasks", schema=None) as batch_op:
        batch_op.alter_column("total_bytes", type_=sa.Integer(), existing_type=sa.BigInteger())
        batch_op.alter_column("done_bytes", type_=sa.Integer(), existing_type=sa.BigInteger())
