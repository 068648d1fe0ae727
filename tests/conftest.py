"""Suite-wide settings: one intra-op thread. The tests use tiny tensors, where thread synchronisation
costs more than it saves, and CI runs on 2 cores."""

import torch

torch.set_num_threads(1)
