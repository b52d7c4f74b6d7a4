"""Versioned feature toggles, the system banner and the default model (``/api/configuration``), and their enforcement."""
