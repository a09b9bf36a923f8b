"""Training data: splits, case store reading, patch sampling, augmentation, the DataModule."""
