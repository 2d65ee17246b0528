"""送受信メール: imported customer mail (the import engine fills it)."""
