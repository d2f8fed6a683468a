"""A Pipecat voice bot whose face is a synctalk2d avatar, served to a browser over Pipecat's
SmallWebRTCTransport; the avatar renders in the bot's process.

    pip install 'synctalk2d[pipecat]' 'pipecat-ai[webrtc,deepgram,openai,cartesia]'
    export DEEPGRAM_API_KEY=... OPENAI_API_KEY=... CARTESIA_API_KEY=...
    SYNCTALK2D_AVATAR=avatars/me python examples/pipecat_webrtc.py

`run_bot` is what Pipecat's runners call with a connected `SmallWebRTCConnection` (see
Pipecat's own SmallWebRTC examples for the signalling page); run directly, this file
builds the pipeline and stops where it needs that browser connection.
"""

from __future__ import annotations

import asyncio
import os

from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.transports.base_transport import TransportParams

from synctalk2d.integrations.pipecat import SyncTalk2DVideoService

AVATAR = os.environ.get("SYNCTALK2D_AVATAR", "avatars/me")
WIDTH = 480


def build_pipeline(transport, avatar: SyncTalk2DVideoService) -> Pipeline:
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.services.cartesia.tts import CartesiaTTSService
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.openai.llm import OpenAILLMService

    context = LLMContext([{"role": "system", "content": "You are a friendly assistant. Keep answers short."}])
    aggregators = LLMContextAggregatorPair(context)
    return Pipeline(
        [
            transport.input(),
            DeepgramSTTService(api_key=os.environ["DEEPGRAM_API_KEY"]),
            aggregators.user(),
            OpenAILLMService(api_key=os.environ["OPENAI_API_KEY"]),
            CartesiaTTSService(api_key=os.environ["CARTESIA_API_KEY"], voice_id="71a7ad14-091c-4e8e-a314-022ece01c121"),
            avatar,  # after the TTS: its audio becomes the avatar's frames and speech
            transport.output(),
            aggregators.assistant(),
        ]
    )


async def run_bot(connection) -> None:
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    avatar = SyncTalk2DVideoService(avatar=AVATAR, width=WIDTH)
    height = avatar.lipsync.avatar.info.height * WIDTH // avatar.lipsync.avatar.info.width
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            video_out_enabled=True,
            video_out_is_live=True,
            video_out_width=WIDTH,
            video_out_height=height,
            video_out_framerate=25,
        ),
    )
    task = PipelineTask(build_pipeline(transport, avatar), params=PipelineParams())
    await PipelineRunner().run(task)


if __name__ == "__main__":
    service = SyncTalk2DVideoService(avatar=AVATAR, width=WIDTH)
    print(f"loaded {AVATAR}: {service.lipsync.avatar.info.width}x{service.lipsync.avatar.info.height}, {len(service.lipsync.avatar)} frames")
    print("run_bot(connection) needs a browser's SmallWebRTCConnection: start it from Pipecat's SmallWebRTC runner")
    asyncio.run(asyncio.sleep(0))
