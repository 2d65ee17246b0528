"""folder rescan in progress: a UIDVALIDITY re-baseline remembers its date rule until it finishes

Revision ID: 9c1e2a7b4d10
Revises: 585e8a6d034b
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9c1e2a7b4d10'
down_revision = '585e8a6d034b'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('mailbox_folders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rescan_since', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('mailbox_folders', schema=None) as batch_op:
        batch_op.drop_column('rescan_since')
