"""The preset form: メールボックスサーバーの推奨設定を追加/編集 (password or OAuth2)."""
import re
from typing import Mapping

from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Regexp, StopValidation

from portal.forms import (ChoiceField, PortalForm, ServerFieldsMixin, host_field, max_length, port_field, required,
                          security_field, strip)
from portal.models import OAuthProvider
from portal.oauth.client import OAuthError, UrlPolicy, check_url
from portal.oauth.providers import (PROVIDER_LABELS, SERVER_DEFAULTS, TENANT_PATTERN,
                                    operator_app_configured)

AUTH_METHOD_LABELS = {"password": "パスワード", "oauth2": "OAuth2（サインインして連携）"}
# RFC 6749 appendix A: client_id and client_secret are VSCHAR, a scope token is NQCHAR without spaces.
VSCHAR = r"^[\x20-\x7e]*$"
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


def oauth_only(form, field):
    """Skip an OAuth2 field's checks for a password preset (its value is not stored)."""
    if form.auth_method.data != "oauth2":
        field.errors[:] = []
        raise StopValidation()


def provider_choices() -> list[SelectChoice]:
    """Microsoft 365, Google Workspace, その他; the big two carry their servers for the form's script."""
    choices = []
    for provider, label in PROVIDER_LABELS.items():
        defaults = SERVER_DEFAULTS.get(provider)
        render_kw = {} if defaults is None else {
            f"data-{protocol}-{part}": str(getattr(defaults, f"{protocol}_{part}").value
                                           if part == "security" else getattr(defaults, f"{protocol}_{part}"))
            for protocol in ("imap", "smtp") for part in ("host", "port", "security")}
        choices.append(SelectChoice(provider.value, label, render_kw=render_kw))
    return choices


class PresetForm(ServerFieldsMixin, PortalForm):
    """Name, IMAP and SMTP host, port and security, and how members log in: a password or OAuth2."""

    name = StringField("設定名", filters=[strip], validators=[required(), max_length(100)])
    auth_method = ChoiceField("認証方式", choices=[SelectChoice(value, label) for value, label in AUTH_METHOD_LABELS.items()],
                              default="password",
                              validators=[required()])
    oauth_provider = SelectField("プロバイダー", choices=provider_choices(), default="microsoft",
                                 validate_choice=False)  # checked only for OAuth2, in check_oauth_fields
    oauth_tenant = StringField("テナント", filters=[strip], validators=[oauth_only, max_length(254)])
    oauth_discovery_url = StringField("ディスカバリーURL", filters=[strip], validators=[oauth_only, max_length(2000)])
    oauth_scopes = StringField("追加のスコープ", filters=[strip], validators=[oauth_only, max_length(1000)])
    oauth_client_id = StringField("クライアントID", filters=[strip], validators=[
        oauth_only, max_length(255), Regexp(VSCHAR, message="クライアントIDに使用できない文字が含まれています。")])
    oauth_client_secret = PasswordField("クライアントシークレット", validators=[
        oauth_only, max_length(2000), Regexp(VSCHAR, message="クライアントシークレットに使用できない文字が含まれています。")])
    imap_host = host_field("IMAPサーバー")
    imap_port = port_field("IMAPポート")
    imap_security = security_field("IMAPの暗号化")
    smtp_host = host_field("SMTPサーバー")
    smtp_port = port_field("SMTPポート")
    smtp_security = security_field("SMTPの暗号化")
    smtp_no_auth = BooleanField("SMTP認証なし（社内の中継サーバーなど、ログインせずに送信するサーバー）")

    @property
    def uses_oauth(self) -> bool:
        """True when OAuth2 is chosen."""
        return self.auth_method.data == "oauth2"

    @property
    def provider(self) -> OAuthProvider | None:
        """The chosen provider, or None for a value that is not one."""
        try:
            return OAuthProvider(self.oauth_provider.data)
        except ValueError:
            return None

    def fill_provider_servers(self) -> None:
        """Server fields left empty take Microsoft 365's or Google Workspace's servers (before validation)."""
        defaults = SERVER_DEFAULTS.get(self.provider) if self.uses_oauth else None
        if defaults is None:
            return
        for protocol in ("imap", "smtp"):
            host, port = getattr(self, f"{protocol}_host"), getattr(self, f"{protocol}_port")
            if not host.data:
                host.data = getattr(defaults, f"{protocol}_host")
                getattr(self, f"{protocol}_security").data = getattr(defaults, f"{protocol}_security").value
            if port.data is None and not port.process_errors:
                port.data = getattr(defaults, f"{protocol}_port")

    def check_oauth_fields(self, config: Mapping, url_policy: UrlPolicy, has_stored_secret: bool) -> bool:
        """Japanese errors for an OAuth2 preset that could not sign anyone in (no client app, a bad URL...)."""
        if not self.uses_oauth:
            return True
        errors_before = self._oauth_error_count()
        provider = self.provider
        if provider is None:
            self.oauth_provider.errors.append("選択肢から選んでください。")
            return False
        if provider == OAuthProvider.MICROSOFT and self.oauth_tenant.data and not self.oauth_tenant.errors \
                and not TENANT_PATTERN.match(self.oauth_tenant.data):
            self.oauth_tenant.errors.append("テナントの形式が正しくありません。ディレクトリ (テナント) ID"
                                            "（xxxxxxxx-xxxx-…）または organizations を入力してください。")
        if provider == OAuthProvider.OIDC:
            self._check_discovery(url_policy)
        client_id, secret = self.oauth_client_id.data, self.oauth_client_secret.data
        if not client_id:
            if provider == OAuthProvider.OIDC or not operator_app_configured(provider, config):
                self.oauth_client_id.errors.append("クライアントIDを入力してください。")
            if secret:
                self.oauth_client_secret.errors.append("クライアントシークレットだけを入力することはできません。"
                                                       "クライアントIDも入力してください。")
        elif not secret and not has_stored_secret:
            self.oauth_client_secret.errors.append("クライアントシークレットを入力してください。")
        return self._oauth_error_count() == errors_before

    def _check_discovery(self, url_policy: UrlPolicy) -> None:
        """The discovery URL is required, https (or an opened local test server), and scopes are tokens."""
        url = self.oauth_discovery_url
        if not url.data:
            url.errors.append("ディスカバリーURLを入力してください。")
        elif not url.errors:
            try:
                check_url(url.data, url_policy, "ディスカバリーURL")
            except OAuthError as error:
                url.errors.append(error.message)
        if self.oauth_scopes.data and not self.oauth_scopes.errors and not all(
                SCOPE_TOKEN.match(token) for token in self.oauth_scopes.data.split(" ") if token):
            self.oauth_scopes.errors.append("スコープは半角英数字と記号で、空白で区切って入力してください。")

    def _oauth_error_count(self) -> int:
        """Errors on the OAuth2 fields so far."""
        return sum(len(getattr(self, name).errors) for name in (
            "oauth_provider", "oauth_tenant", "oauth_discovery_url", "oauth_scopes", "oauth_client_id",
            "oauth_client_secret"))
