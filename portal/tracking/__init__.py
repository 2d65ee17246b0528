"""Open and click tracking of mail sent from the portal."""
