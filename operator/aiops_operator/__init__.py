"""ModelService operator (Kopf)."""
