"""The public executor classes: thin, validate then compose a scheduler."""
