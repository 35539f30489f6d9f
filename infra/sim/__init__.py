"""A scale simulation of calsync on a virtual clock (issue 19).

The real services (`functions.intake.webhook`, `functions.sync`, `functions.lifecycle`,
`functions.delivery`) wired as `functions/app.py` wires them, over in-memory
implementations of the ports in `functions/ports.py`: a metered Firestore
(`database`, `stores`, `lifecycle`), a Cloud Tasks queue with its naming, rate and
retry rules (`tasks`), a fake Google Calendar with sync tokens, channels, pushes
and the Calendar emulator's own quota rules (`calendar`, `ports`), a Pub/Sub
publisher (`pubsub`); a discrete-event loop on a virtual clock (`clock`), a
workload model (`workload`), the staleness probe (`probe`), the wiring and the
steady-state seed (`world`) and the figures (`report`).

May import `functions` (services, ports, and the adapters' pure helpers:
document-to-value conversions, task names, error classification),
`infra.calendar_emulator` (errors, quotas, clock) and python-hcl2 (terraform's
queue defaults). Used by `bench/scale.py` and `tests/unit/sim/`.
"""
