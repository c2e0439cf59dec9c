"""schedules.warm_start: how many of the previous run's best configs start each scheduled run (default 3).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "warm_start" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("schedules")}:
        op.add_column("schedules", sa.Column("warm_start", sa.Integer(), server_default="3"))


def downgrade() -> None:
    op.drop_column("schedules", "warm_start")
