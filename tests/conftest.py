"""Shared test settings: few threads on the 2-core CI machine."""

import torch

torch.set_num_threads(1)
