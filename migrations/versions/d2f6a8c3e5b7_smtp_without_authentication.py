"""SMTP without authentication: a preset or link may send through a relay that takes no login (SMTP認証なし)

Revision ID: d2f6a8c3e5b7
Revises: d81f5c2e7a40
Create Date: 2026-11-28 10:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd2f6a8c3e5b7'
down_revision = 'd81f5c2e7a40'
branch_labels = None
depends_on = None


def upgrade():
    for table in ('mailbox_presets', 'mailbox_links'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('smtp_auth', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    for table in ('mailbox_links', 'mailbox_presets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('smtp_auth')
