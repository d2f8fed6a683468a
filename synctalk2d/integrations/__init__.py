"""synctalk2d inside voice-agent frameworks: thin adapters over the live core
(`inference.stream.LiveSession` and its clock, `inference.player.play`), the renderer
running in the agent's own process. `livekit` (extra ``livekit``) and `pipecat` (extra
``pipecat``)."""
