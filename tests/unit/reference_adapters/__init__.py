"""Straightforward reference versions of the ECS, Windows and Squid adapters.

They read every field by name, one lookup at a time, as the adapters did
before they were tuned for speed. tests/unit/test_adapter_equivalence.py
checks that the tuned adapters in detectors/adapters produce the same
observations and the same errors. Fix a behaviour in both places, never in
the reference alone.
"""
