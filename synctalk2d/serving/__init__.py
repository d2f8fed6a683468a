"""HTTP and WebSocket serving of a trained avatar (`synctalk2d serve`)."""
