import pytest

from synctalk2d.errors import UserError
from synctalk2d.packaged import installed_file


def test_a_missing_package_or_file_says_what_to_install():
    with pytest.raises(UserError, match=r"the package no-such-dist is not installed \(pip install no-such-dist\)"):
        installed_file("no_such_package_here", "x.onnx", "the model", "no-such-dist")
    with pytest.raises(UserError, match="the voice-activity model is missing: .*nothing.onnx"):
        installed_file("silero_vad", "data/nothing.onnx", "the voice-activity model", "silero-vad")
    assert installed_file("silero_vad", "data/silero_vad.onnx", "the voice-activity model", "silero-vad").is_file()
