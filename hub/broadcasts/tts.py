"""Text-to-speech for announcements typed by ward staff (Vietnamese by default).

Engines sit behind ``TtsEngine``; the default runs espeak-ng's Vietnamese voices in a
subprocess. Its output goes through the same checks and normalisation as an upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import unicodedata
from collections.abc import Sequence
from typing import Protocol

from hub.errors import FieldProblem, Unavailable, ValidationFailed

_MAX_STDERR = 400


class TtsUnavailable(Unavailable):
    slug = "tts-unavailable"
    title = "Text-to-speech is unavailable"


class TtsEngine(Protocol):
    async def synthesize(self, text: str, voice: str) -> bytes:
        """Audio (any format the audio pipeline decodes) of ``text`` spoken by ``voice``."""
        ...


class EspeakNg:
    """espeak-ng writing a WAV to stdout; the text goes in on stdin, never on the command line."""

    def __init__(
        self, command: str = "espeak-ng", words_per_minute: int = 140, timeout_s: float = 30.0
    ) -> None:
        self.command = command
        self.words_per_minute = words_per_minute
        self.timeout_s = timeout_s

    @property
    def available(self) -> bool:
        return shutil.which(self.command) is not None

    async def synthesize(self, text: str, voice: str) -> bytes:
        program = shutil.which(self.command)
        if program is None:
            raise TtsUnavailable(
                f"{self.command} is not installed on the hub (apt-get install espeak-ng)"
            )
        process = await asyncio.create_subprocess_exec(
            program,
            "-v",
            voice,
            "-s",
            str(self.words_per_minute),
            "-b",
            "1",
            "--stdin",
            "--stdout",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                audio, errors = await process.communicate(text.encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise TtsUnavailable(
                f"{self.command} took longer than {self.timeout_s:.0f} s"
            ) from None
        if process.returncode != 0 or not audio:
            reason = errors.decode(errors="replace").strip()[:_MAX_STDERR]
            raise TtsUnavailable(
                f"{self.command} failed (exit {process.returncode}): {reason or 'no audio'}"
            )
        return audio


def checked_text(
    text: str, voice: str | None, voices: Sequence[str], max_chars: int, field: str = "text"
) -> tuple[str, str]:
    """The text in NFC (as espeak-ng expects Vietnamese) and the voice, or ValidationFailed."""
    problems = []
    cleaned = unicodedata.normalize("NFC", text).strip()
    if not cleaned:
        problems.append(FieldProblem(field, "give the text to be spoken"))
    elif len(cleaned) > max_chars:
        problems.append(
            FieldProblem(
                field,
                f"the text has {len(cleaned)} characters; at most {max_chars} can be spoken "
                "in one announcement",
            )
        )
    elif any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in cleaned):
        problems.append(FieldProblem(field, "the text contains control characters"))
    chosen = voice or voices[0]
    if chosen not in voices:
        problems.append(FieldProblem("voice", f"choose one of {', '.join(voices)}"))
    if problems:
        raise ValidationFailed("the text cannot be spoken as given", problems)
    return cleaned, chosen
