"""isograd-relay's domain and jobs: everything but the web edge (which is `webhooks`).

    jobs/        the `worker` process: process_completion, deliver (Dramatiq actors)
    scheduler/   the `scheduler` process: reconciler, sweeper, retention, ATS order polling
    sinks/       delivery targets, one module per kind, behind `Sink`; registry.py lists them
    isograd/     the Isograd API client        storage/   the SQL store and its migrations
    cli/         `isograd-relay`, every print and exit status
    dev/         development mode (not the relay)   simulator/  a fake Isograd API (not the relay)

The modules at this level are the domain (grades, events, invitations, requests, replay, …) and
the wiring (settings, runtime, broker, logs, metrics, transports). ARCHITECTURE.md draws the
data flow.
"""

__version__ = "0.1.0"
