"""Studies that train: retraining, confirmation, protocol fidelity, sampler comparisons, reconstructions, the GPU check."""
