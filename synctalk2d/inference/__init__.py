"""Rendering: audio features -> lip-synced frames of an avatar (offline to MP4, or streamed)."""
