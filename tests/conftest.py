"""Shared test setup: one torch thread per test process keeps tiny models fast on 2-core machines."""
import torch

torch.set_num_threads(1)
