"""shortrun: latent-variable text models trained with short-run Langevin inference."""
import os

# OpenMP threads that spin at barriers stall torch's LSTM by ~50x when anything else shares the CPU
# (measured: 10 ms -> 530 ms per step on 2 busy cores); sleeping waits cost little when the CPU is idle.
# Set before torch loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
