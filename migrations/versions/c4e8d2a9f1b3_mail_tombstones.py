"""mail tombstones: the keys of messages deleted in the portal, so no pass imports them again

Revision ID: c4e8d2a9f1b3
Revises: a7c3e91f0b24
Create Date: 2026-11-28 10:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e8d2a9f1b3'
down_revision = 'a7c3e91f0b24'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('mail_tombstones',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('message_key', sa.String(length=255), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_by_user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_mail_tombstones_account_id_accounts')),
    sa.ForeignKeyConstraint(['deleted_by_user_id'], ['users.id'],
                            name=op.f('fk_mail_tombstones_deleted_by_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_tombstones')),
    sa.UniqueConstraint('account_id', 'message_key', name=op.f('uq_mail_tombstones_account_id_message_key'))
    )


def downgrade():
    op.drop_table('mail_tombstones')
