"""Member management (ユーザー管理) screens."""
