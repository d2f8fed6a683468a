"""Audio features: mel spectrograms, per-frame encoder features and their 16-frame windows."""
