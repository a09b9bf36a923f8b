"""Training: the SegmentationTask (one LightningModule), losses, learning-rate schedules, callbacks."""
