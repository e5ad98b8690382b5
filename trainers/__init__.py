"""Problems, the batched model and the stage-wise population trainer (no Ray code here)."""
