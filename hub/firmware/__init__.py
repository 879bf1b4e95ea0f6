"""Firmware: compliance of every device against the signed catalog, and staged rollouts.

The catalog itself (manifests, keys, advisories) is ``firmware_meta``; this slice imports it
into the database (``catalog``), judges each device's reported version (``compliance``,
``service``), plans campaigns (``campaigns``) and drives them from the leader
(``rollout``), with its SQL in ``store``. Routes and services are added by
``hub.firmware.wiring``; the CLI by ``hub.firmware.cli.make_app``. This package imports
nothing itself.
"""
