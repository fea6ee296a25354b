"""shortrun: latent-variable text models trained with short-run Langevin inference."""

__version__ = "0.1.0"
