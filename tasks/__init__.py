"""Pipeline stages: each reads the typed config, calls the library, writes its outputs and logs to MLflow."""
