"""A LiveKit voice agent whose face is a synctalk2d avatar, rendered in the agent's process.

    pip install 'synctalk2d[livekit]' livekit-plugins-openai
    export LIVEKIT_URL=wss://... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... OPENAI_API_KEY=...
    SYNCTALK2D_AVATAR=avatars/me python examples/livekit_agent.py dev

Join the room from the LiveKit Agents Playground (or any LiveKit client): the avatar
publishes its video and its voice, lips in step. Any STT/LLM/TTS the framework offers works
the same way; the avatar only needs the agent's audio output.
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentSession, JobContext, WorkerOptions, cli
from livekit.agents.voice.room_io import RoomOptions

from synctalk2d.integrations.livekit import AvatarSession

AVATAR = os.environ.get("SYNCTALK2D_AVATAR", "avatars/me")


async def entrypoint(ctx: JobContext) -> None:
    from livekit.plugins import openai  # a speech-to-speech model; swap in any STT + LLM + TTS

    await ctx.connect()
    session = AgentSession(llm=openai.realtime.RealtimeModel(voice="alloy"))
    avatar = AvatarSession(avatar=AVATAR, width=480)  # loads the avatar, renders in this process
    await avatar.start(session, room=ctx.room)  # before session.start: the avatar becomes the audio output
    await session.start(
        agent=Agent(instructions="You are a friendly assistant. Keep answers short."),
        room=ctx.room,
        room_options=RoomOptions(audio_output=False),  # the avatar publishes the voice, in step with its lips
    )
    ctx.add_shutdown_callback(avatar.aclose)


if __name__ == "__main__":
    cli.run_app(WorkerOptions(entrypoint_fnc=entrypoint))
