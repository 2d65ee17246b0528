"""メールボックスサーバーの推奨設定: the account's IMAP/SMTP presets."""
