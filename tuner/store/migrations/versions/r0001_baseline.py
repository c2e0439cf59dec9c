"""The store as tuner made it before migrations: sweeps, trials, results, schedules, schedule_runs.

A store from then is stamped at this revision once its tables exist (tuner.store.engine.migrate); nothing to do
here.

Revision ID: 0001
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
