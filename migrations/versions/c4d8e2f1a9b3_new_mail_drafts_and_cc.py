"""new mail drafts and Cc: a draft may belong to a customer instead of an answered message, and keeps its Cc

Revision ID: c4d8e2f1a9b3
Revises: c4e8d2a9f1b3
Create Date: 2026-11-28 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4d8e2f1a9b3'
down_revision = 'c4e8d2a9f1b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('mail_drafts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cc_addresses', sa.Text(), server_default='', nullable=False))
        batch_op.alter_column('reply_to_message_id', existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_mail_drafts_customer_id_customers'), 'customers',
                                    ['customer_id'], ['id'])


def downgrade():
    op.execute("DELETE FROM mail_drafts WHERE reply_to_message_id IS NULL")
    with op.batch_alter_table('mail_drafts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_mail_drafts_customer_id_customers'), type_='foreignkey')
        batch_op.alter_column('reply_to_message_id', existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column('cc_addresses')
        batch_op.drop_column('customer_id')
