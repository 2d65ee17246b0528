"""Operator commands: create-account | seed-demo | reset-password | rotate-mailbox-key | set-account-status | sync."""
import os

import click
from flask import Flask, url_for
from sqlalchemy import select

from portal.auth.resets import issue_reset
from portal.auth.services import normalise_email
from portal.background import run_sync
from portal.email_address import INVALID_EMAIL, is_valid_email
from portal.extensions import db
from portal.inputs import has_control_characters
from portal.mailbox.credentials import secret_box
from portal.mailbox.services import rotate_encryption_key
from portal.models import Account, AccountStatus, User, utcnow
from portal.presets.services import rotate_preset_secrets
from portal.settings import services


def print_demo_logins() -> None:
    """Print the demo members' sign-in details."""
    click.echo(f"デモアカウント「{services.DEMO_ACCOUNT}」のログイン（パスワードはすべて {services.DEMO_PASSWORD}）:")
    for email, name, role in services.DEMO_MEMBERS:
        click.echo(f"  {role.value:<8} {email}  {name}")


def init_app(app: Flask) -> None:
    """Register the commands."""

    @app.cli.command("create-account")
    @click.option("--name", required=True, help="アカウント名（会社名）")
    @click.option("--owner-email", required=True, help="オーナーのメールアドレス")
    @click.option("--owner-password", required=True, help="オーナーの初期パスワード（新規のログインIDのみ）")
    @click.option("--owner-name", default=None, help="オーナーの氏名")
    def create_account_command(name, owner_email, owner_password, owner_name):
        """Create an account with its owner."""
        if not name.strip():
            raise click.BadParameter("アカウント名を入力してください。", param_hint="--name")
        for value, hint in ((name, "--name"), (owner_name or "", "--owner-name")):
            if has_control_characters(value):
                raise click.BadParameter("改行や制御文字を含めることはできません。", param_hint=hint)
        if not is_valid_email(normalise_email(owner_email)):
            raise click.BadParameter(INVALID_EMAIL, param_hint="--owner-email")
        if len(owner_password) < 10:
            raise click.BadParameter("パスワードは10文字以上にしてください。", param_hint="--owner-password")
        account = services.create_account(db.session, name, owner_email, owner_password, owner_name)
        click.echo(f"アカウント「{account.name}」(id={account.id}) を作成しました。オーナー: {owner_email.strip().lower()}")

    @app.cli.command("reset-password")
    @click.option("--email", required=True, help="パスワードを再設定するログインIDのメールアドレス")
    def reset_password_command(email):
        """Print a one-time password reset link for a login (the operator hands it over; nothing is set here)."""
        user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is None:
            raise click.ClickException("このメールアドレスのログインIDはありません。")
        hours = app.config["PASSWORD_RESET_HOURS"]
        token = issue_reset(db.session, user, None, None, utcnow(), hours)
        db.session.commit()
        with app.test_request_context():
            path = url_for("auth.reset_password", token=token)
        # Where wsgi.py serves unless PUBLIC_BASE_URL says how people reach the portal.
        served_at = f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
        base = app.config["PUBLIC_BASE_URL"] or served_at
        click.echo(f"{user.email} のパスワード再設定リンク（{hours}時間有効・1回限り。以前のリンクは使えなくなりました）:")
        click.echo(f"  {base}{path}")
        click.echo("ご本人に渡してください。リンクで新しいパスワードを設定すると、その人のログインはすべて終了します。")

    @app.cli.command("rotate-mailbox-key")
    def rotate_mailbox_key_command():
        """Re-encrypt stored mailbox passwords, OAuth2 tokens and client secrets with the current key."""
        rotated = rotate_encryption_key(db.session, secret_box(app.config))
        click.echo(f"{rotated}件のメールボックス連携のパスワード・OAuth2トークンを新しい鍵で暗号化し直しました。")
        presets = rotate_preset_secrets(db.session, secret_box(app.config))
        click.echo(f"{presets}件の推奨設定のクライアントシークレットを新しい鍵で暗号化し直しました。")

    @app.cli.command("set-account-status")
    @click.option("--account", "account_id", required=True, type=int, help="アカウントID")
    @click.option("--status", required=True, type=click.Choice([s.value for s in AccountStatus]))
    def set_account_status_command(account_id, status):
        """Re-activate, disable or cancel an account (stopping it unlinks every mailbox)."""
        account = db.session.get(Account, account_id)
        if account is None:
            raise click.ClickException(f"アカウント {account_id} は存在しません。")
        unlinked = services.change_account_status(db.session, None, AccountStatus(status), utcnow(), account=account)
        click.echo(f"アカウント「{account.name}」の状態を {status} にしました（連携解除 {unlinked}件）。")

    @app.cli.command("sync")
    @click.option("--link", "link_id", type=int, default=None, help="この連携IDだけを同期する")
    def sync_command(link_id):
        """Run one import pass now (every due link, or one link) and print per-link results."""
        results = run_sync(app, [link_id] if link_id is not None else None)
        if not results:
            click.echo("同期する連携はありません。")
        for result in results:
            status = "スキップ" if result.skipped else result.state.value
            too_large = f"（うちサイズ超過 {result.too_large}件）" if result.too_large else ""
            click.echo(f"連携 {result.link_id}: 取り込み {result.imported}件{too_large} / 対象外 {result.excluded}件 / "
                       f"状態 {status}{' / ' + result.error if result.error else ''}")

    @app.cli.command("seed-demo")
    @click.option("--if-empty", is_flag=True, help="アカウントが1件もないときだけ作成する")
    def seed_demo_command(if_empty):
        """Seed the demo account (owner, admin, manager, user and a few customers)."""
        demo_exists = db.session.scalar(select(User.id).where(User.email == services.DEMO_MEMBERS[0][0]))
        if if_empty and not services.database_is_empty(db.session):
            if demo_exists:
                print_demo_logins()
            else:
                click.echo("既存のデータがあるため、デモデータは作成しませんでした。")
            return
        if demo_exists:
            raise click.ClickException("デモアカウントはすでに作成されています。")
        services.seed_demo(db.session)
        click.echo("デモデータを作成しました。")
        print_demo_logins()
