"""Announcement audio: decoded to prove it is audio, loudness-normalised, stored by content.

Whatever arrives (MP3, OGG Vorbis, WAV) is decoded with libsndfile, mixed down to mono,
resampled to one rate, normalised to an integrated loudness (ITU-R BS.1770 / EBU R128)
and kept as a 16-bit WAV named by its sha256, which is what every speaker downloads and
verifies. The file extension and the declared content type are never trusted.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile  # type: ignore[import-untyped]

from hub.errors import FieldProblem, ValidationFailed

# libsndfile's names for the containers accepted; WAVEX is WAV with an extended header.
ACCEPTED_FORMATS = {"WAV": "WAV", "WAVEX": "WAV", "MP3": "MP3", "OGG": "OGG"}
OUTPUT_RATE = 22_050
"""Horn loudspeakers reproduce little above 8 kHz; a lower rate keeps downloads small."""
MIN_DURATION_S = 0.5
PEAK_CEILING = 10 ** (-1.0 / 20)  # -1 dBFS: normalising never clips
_BLOCK_FRAMES = 1 << 18

Samples = npt.NDArray[np.float32]


class AudioRejected(ValidationFailed):
    """The bytes are not an announcement the hub can play; the message says why."""

    def __init__(self, reason: str, field: str = "file") -> None:
        super().__init__(f"not playable audio: {reason}", [FieldProblem(field, reason)])


@dataclass(frozen=True, slots=True)
class PreparedAudio:
    wav: bytes
    sha256: str
    duration_s: float
    sample_rate: int
    original_format: str
    original_sha256: str
    original_bytes: int
    loudness_lufs: float | None
    """Integrated loudness as received; None for silence."""
    gain_db: float


def _decode_mono(raw: bytes, max_duration_s: float, field: str) -> tuple[Samples, int, str]:
    try:
        source = soundfile.SoundFile(io.BytesIO(raw))
    except (soundfile.SoundFileError, RuntimeError, ValueError) as exc:
        raise AudioRejected("the data is not MP3, OGG Vorbis or WAV audio", field) from exc
    with source:
        container = ACCEPTED_FORMATS.get(source.format)
        if container is None:
            raise AudioRejected(
                f"{source.format} audio is not accepted; use MP3, OGG Vorbis or WAV", field
            )
        rate = int(source.samplerate)
        if rate < 8000:
            raise AudioRejected(f"a sample rate of {rate} Hz is too low for speech", field)
        if source.frames > max_duration_s * rate:
            raise AudioRejected(
                f"it lasts {source.frames / rate:.0f} s, longer than the "
                f"{max_duration_s:.0f} s allowed",
                field,
            )
        parts: list[Samples] = []
        try:
            # Mixed down block by block: only the mono signal is ever held whole.
            for block in source.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
                parts.append(block.mean(axis=1, dtype=np.float32))
        except (soundfile.SoundFileError, RuntimeError, ValueError) as exc:
            raise AudioRejected(f"the {container} data is damaged ({exc})", field) from exc
    mono = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if mono.size < MIN_DURATION_S * rate:
        raise AudioRejected(f"it is shorter than {MIN_DURATION_S} s", field)
    if mono.size > max_duration_s * rate:
        raise AudioRejected(f"it is longer than the {max_duration_s:.0f} s allowed", field)
    if not np.all(np.isfinite(mono)):
        raise AudioRejected(f"the {container} data decodes to invalid samples", field)
    return mono, rate, container


def _resample(mono: Samples, rate: int, target: int) -> Samples:
    if rate == target:
        return mono
    # scipy takes a second and a half to import: only audio work pays for it.
    from scipy.signal import resample_poly  # type: ignore[import-untyped]

    common = math.gcd(rate, target)
    resampled = resample_poly(mono, target // common, rate // common)
    return np.asarray(resampled, dtype=np.float32)


def _normalise(
    mono: Samples, rate: int, target_lufs: float, max_gain_db: float
) -> tuple[Samples, float | None, float]:
    import pyloudnorm  # type: ignore[import-untyped]  # imports scipy: see _resample

    loudness = float(pyloudnorm.Meter(rate).integrated_loudness(mono.astype(np.float64)))
    if not math.isfinite(loudness):
        return mono, None, 0.0
    gain_db = min(target_lufs - loudness, max_gain_db)
    peak = float(np.max(np.abs(mono)))
    if peak > 0:
        gain_db = min(gain_db, 20 * math.log10(PEAK_CEILING / peak))
    scaled = (mono * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    return scaled, loudness, gain_db


def prepare_audio(
    raw: bytes,
    *,
    target_lufs: float,
    max_gain_db: float,
    max_duration_s: float,
    field: str = "file",
) -> PreparedAudio:
    """Decode, check, normalise and re-encode; AudioRejected names what is wrong.

    CPU-bound: call it in a worker thread.
    """
    if not raw:
        raise AudioRejected("the file is empty", field)
    mono, rate, container = _decode_mono(raw, max_duration_s, field)
    target_rate = min(rate, OUTPUT_RATE)
    mono = _resample(mono, rate, target_rate)
    normalised, loudness, gain_db = _normalise(mono, target_rate, target_lufs, max_gain_db)
    out = io.BytesIO()
    soundfile.write(out, normalised, target_rate, format="WAV", subtype="PCM_16")
    wav = out.getvalue()
    return PreparedAudio(
        wav=wav,
        sha256=hashlib.sha256(wav).hexdigest(),
        duration_s=normalised.size / target_rate,
        sample_rate=target_rate,
        original_format=container,
        original_sha256=hashlib.sha256(raw).hexdigest(),
        original_bytes=len(raw),
        loudness_lufs=loudness,
        gain_db=round(gain_db, 2),
    )


class AudioStore:
    """Normalised announcements on disk, one file per distinct content."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / f"{sha256}.wav"

    def save(self, audio: PreparedAudio) -> Path:
        """Write the file once; a second asset with the same content shares it."""
        target = self.path(audio.sha256)
        if target.exists():
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=self.root, prefix=".upload-", suffix=".wav")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(audio.wav)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(draft, target)
        except BaseException:
            Path(draft).unlink(missing_ok=True)
            raise
        return target
