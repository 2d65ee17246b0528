"""tracking ids: a random id per tracked message for its tokens, and a keyed client hash per tracking event

Revision ID: d5b7e3c1a902
Revises: d2f6a8c3e5b7
Create Date: 2026-11-28 10:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd5b7e3c1a902'
down_revision = 'd2f6a8c3e5b7'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTER TABLE and CREATE UNIQUE INDEX, no batch: on SQLite a batch would rebuild mail_messages and drop
    # the text search triggers. Mail already sent keeps its message-id tokens (tracking_id stays NULL for it).
    op.add_column('mail_messages', sa.Column('tracking_id', sa.String(length=32), nullable=True))
    op.create_index(op.f('ix_mail_messages_tracking_id'), 'mail_messages', ['tracking_id'], unique=True)
    op.add_column('tracking_events', sa.Column('client_key', sa.String(length=32), nullable=True))


def downgrade():
    op.drop_column('tracking_events', 'client_key')
    op.drop_index(op.f('ix_mail_messages_tracking_id'), table_name='mail_messages')
    op.drop_column('mail_messages', 'tracking_id')
