"""Event kinds of the live engine's heap (docs/architecture.md "Where the live engine stands").

Heap entries are plain tuples ``(time_s, kind, a, sequence, b)`` (``a``: session / request id, or
server for batch events).  Tie-break at equal times, by kind: session end (memory released) < step
arrival < batch done < batch start < admission retry < scheduled admission (``independent``) <
request arrival; then by ``a``: steps reaching a server at the same instant are served in request-id
order; then push order.  Churn adds kinds 7 and 8 (and the step-end kind 0.5): live/churn.py,
live/fastforward.py.
"""

END, STEP, BATCH_DONE, BATCH_START, RETRY, ADMIT, ARRIVAL = range(7)

__all__ = ["ADMIT", "ARRIVAL", "BATCH_DONE", "BATCH_START", "END", "RETRY", "STEP"]
