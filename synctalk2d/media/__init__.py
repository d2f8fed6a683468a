"""Media I/O with PyAV: decoding video at 25 fps by timestamp, decoding audio, writing MP4."""
