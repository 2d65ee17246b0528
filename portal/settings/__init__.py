"""アカウント・機能設定: the settings hub, account settings and the audit log."""
