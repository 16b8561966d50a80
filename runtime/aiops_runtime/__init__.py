"""ModelService inference runtime (FastAPI, scikit-learn, drift detection)."""
