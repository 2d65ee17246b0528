"""OAuth2/OpenID Connect for mailboxes at Microsoft 365, Google Workspace and other providers (no Flask)."""
