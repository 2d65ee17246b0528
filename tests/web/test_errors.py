"""Error pages are Japanese and carry the right status."""
from tests.factories import make_account


def test_unknown_page_is_a_japanese_404(client, auth):
    """A mistyped URL gets the 404 page inside the layout."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "ページが見つかりません" in response.get_data(as_text=True)


def test_wrong_method_is_a_japanese_405(client, auth):
    """GET on a POST-only route is refused politely."""
    account, owner = make_account()
    auth.login_member(owner)
    response = client.get("/logout")
    assert response.status_code == 405
    assert "この操作はできません" in response.get_data(as_text=True)


def test_server_error_shows_japanese_500(make_app):
    """A crash mid-request shows the Japanese 500 page, not a traceback."""
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("simulated failure")

    response = app.test_client().get("/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "エラーが発生しました" in page and "simulated failure" not in page
