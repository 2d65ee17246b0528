"""Japanese error pages for 400/403/404/405/413/422/429/500 and CSRF failures."""
from flask import Flask, has_request_context, render_template, request
from flask_wtf.csrf import CSRFError

from portal.extensions import db

MESSAGES = {
    400: ("リクエストが正しくありません", "入力内容を確認して、もう一度お試しください。"),
    403: ("閲覧権限がありません", "この画面を表示する権限がありません。"),
    404: ("ページが見つかりません", "お探しのページは存在しないか、削除された可能性があります。"),
    405: ("この操作はできません", "このページではその操作を受け付けていません。"),
    413: ("送信データが大きすぎます", "一度に送信できるのは2MBまでです。本文などを短くして、もう一度お試しください。"),
    422: ("入力内容を確認してください", "入力内容に誤りがあります。内容を確認して、もう一度お試しください。"),
    429: ("しばらくお待ちください", "短時間に操作が集中しました。時間をおいて、もう一度お試しください。"),
    500: ("エラーが発生しました", "申し訳ありません。処理中にエラーが発生しました。時間をおいて、もう一度お試しください。"),
}


# A 403 for a change (a POST, or a form or confirmation screen) says 操作, not 閲覧.
EDIT_FORBIDDEN = ("操作権限がありません", "この操作を行う権限がありません。必要な場合は、オーナーかアドミンにご依頼ください。")
EDIT_PATH_PARTS = {"new", "edit", "delete", "disable", "enable", "cancel", "unlink", "reset-link", "role", "reply",
                   "compose", "on", "off", "stop", "link", "reauth", "sync"}


def _is_change_attempt() -> bool:
    """True for a POST, or for opening a screen that exists to change something (its path names the change)."""
    if not has_request_context():
        return False
    return request.method not in ("GET", "HEAD") or bool(EDIT_PATH_PARTS & set(request.path.split("/")))


def render_error(status: int, detail: str | None = None):
    """Render the shared error page with the status's Japanese title."""
    title, message = EDIT_FORBIDDEN if status == 403 and _is_change_attempt() else MESSAGES[status]
    return render_template("errors/error.html", status=status, title=title, message=detail or message), status


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_error(400, "フォームの有効期限が切れたか、不正な送信です。画面を読み込み直して、もう一度お試しください。")

    for status in (400, 403, 404, 405, 413, 422, 429):
        app.register_error_handler(status, lambda error, status=status: render_error(
            status, error.description if status not in (413, 429) and _is_custom(error) else None))

    @app.errorhandler(500)
    def server_error(error):
        db.session.rollback()
        return render_error(500)


def _is_custom(error) -> bool:
    """True when the code passed its own Japanese description to abort()."""
    return error.description not in (None, type(error).description)
