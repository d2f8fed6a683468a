import numpy as np
import torch

from synctalk2d.audio.ave import BATCH_SIZES, ave_features, mel_windows, warm_up
from synctalk2d.audio.mel import mel_index


class Probe(torch.nn.Module):
    """(B, 1, 80, 16) -> (B, 512): mel bin 0 of the 16 frames it saw, 32 times over, so a
    test can read which mel frames went in (and whether it ran in eval mode)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.modes, self.batches = [], []

    def forward(self, mel):
        self.modes.append(self.training)
        self.batches.append(len(mel))
        return mel[:, 0, 0, :].repeat(1, 32) * self.scale


def numbered_mel(length):
    """Mel frames whose bin 0 holds their own index."""
    mel = np.zeros((length, 80), np.float32)
    mel[:, 0] = np.arange(length)
    return mel


def test_mel_windows_start_at_mel_index_in_the_encoder_layout():
    mel = np.random.default_rng(0).normal(size=(100, 80)).astype(np.float32)
    windows = mel_windows(mel, np.array([0, 1, 7]))
    assert windows.shape == (3, 1, 80, 16) and windows.dtype == np.float32
    for window, frame in zip(windows, [0, 1, 7]):
        np.testing.assert_array_equal(window[0], mel[mel_index(frame) : mel_index(frame) + 16].T)


def test_windows_past_the_mel_are_clamped_to_the_last_16_mel_frames():
    mel = numbered_mel(161)  # 2 s of audio; 50 frames
    starts = mel_windows(mel, np.arange(50))[:, 0, 0, 0]
    assert starts[45] == mel_index(45) == 144  # the last window that fits
    assert (starts[46:] == 145).all()  # mel_index would give 147 .. 156
    short = mel_windows(numbered_mel(10), np.array([0]))[0, 0, 0]
    assert short[:10].tolist() == list(range(10)) and (short[10:] == -4).all()  # under 0.2 s: silence after


def test_ave_features_run_every_frame_in_eval_mode_in_a_few_batch_shapes():
    """On a GPU each new input shape costs kernel selection, so the encoder only ever sees
    `BATCH_SIZES` (padded), and `warm_up` has met them all before the first real call."""
    probe = Probe()
    warm_up(probe)
    assert sorted(probe.batches) == sorted(BATCH_SIZES)
    probe.batches.clear()
    features = ave_features(numbered_mel(1300), 300, probe)  # 12 s of audio
    assert features.shape == (300, 512) and features.dtype == np.float32
    assert features[:, 0].tolist() == [min(mel_index(i), 1300 - 16) for i in range(300)]
    np.testing.assert_array_equal(features[:, 16], features[:, 0])
    assert probe.batches == [256, 64] and set(probe.batches) <= set(BATCH_SIZES)  # 256 + 44 padded
    assert probe.modes[-2:] == [False, False] and probe.training  # eval mode, train mode restored
    np.testing.assert_array_equal(ave_features(numbered_mel(1300), 300, probe)[:50], ave_features(numbered_mel(1300), 50, probe))
