"""Customer (顧客情報) screens."""
