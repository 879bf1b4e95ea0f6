"""Loudspeaker broadcasts: audio, text-to-speech, schedules, conflicts, dispatch, delivery.

The routes and background services are added by ``hub.broadcasts.wiring``; this package
imports nothing itself, so the RRULE expansion child process starts quickly.
"""
