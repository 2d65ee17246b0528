"""メールボックス連携: linking and unlinking one's own mailbox."""
