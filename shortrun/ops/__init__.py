"""The MLflow- and DVC-aware layer: tracking runs, the model registry and its cards, serving a registered
generator, reading dvc.lock. The torch library (the rest of shortrun/) imports nothing from here."""
