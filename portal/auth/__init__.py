"""Sign-in, sign-out and choosing the account to work in."""
