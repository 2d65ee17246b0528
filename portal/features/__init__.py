"""機能契約: turning paid features on and off."""
