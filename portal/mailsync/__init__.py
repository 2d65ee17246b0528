"""The import engine and mail-server talk. No Flask and no feature package here: hooks and providers come in."""
