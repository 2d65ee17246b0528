"""kept sanitised mail html: a message's HTML body is sanitised once and the result stored with it

Revision ID: d81f5c2e7a40
Revises: c4d8e2f1a9b3
Create Date: 2026-11-28 10:35:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd81f5c2e7a40'
down_revision = 'c4d8e2f1a9b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('safe_html', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('safe_html_blocked', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('safe_html_height', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('safe_html_version', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_column('safe_html_version')
        batch_op.drop_column('safe_html_height')
        batch_op.drop_column('safe_html_blocked')
        batch_op.drop_column('safe_html')
