"""ONVIF cameras: WS-Discovery, onboarding probe, health sweeps, PullPoint events, snapshots."""
