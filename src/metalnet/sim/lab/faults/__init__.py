"""The fault campaign: every fault injected with work in flight, then audited.

`rig` builds the stage (watch on the switch, fault timing, serve workers), `scenarios`
plays one fault each, `audit` judges what survived. The tests (tests/faults) and the
benchmark (bench/faults.py) run the same scenarios.
"""
