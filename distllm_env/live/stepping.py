"""Session stepping of the live engine: the hot loop (docs/simulator.md "The live engine").

:class:`SteppingMixin` holds the methods of :class:`~distllm_env.live.engine.LiveSimulation` that
serve steps and iterations: a step reaching a server (``_step_arrives``), the inline chains that serve
a session's steps without the event queue while nothing can interfere (``_chain``, ``_serial_chain``,
``_alone_limit_s``), a step's end (``_step_done``) and the iterations of ``batched``
(``_batch_start`` / ``_batch_done``, :func:`~distllm_env.live.server_models.batch_time_s`).  Split out
of live/engine.py (same code, no behaviour change); the state it reads is set up by
``LiveSimulation.__init__``.
"""

from __future__ import annotations

import heapq
import math

from .event_kinds import BATCH_DONE, BATCH_START, END, STEP
from .server_models import batch_time_s
from .sessions import DECODE, DONE, Session


class SteppingMixin:
    """Step and iteration handling of :class:`~distllm_env.live.engine.LiveSimulation` (a mixin: it
    relies on the engine's attributes and on ``_push``)."""

    def _step_arrives(self, t: float, sid: int, h: int) -> None:
        s = self.sessions[sid]
        if self._inline:
            if self._serial:
                self._serial_chain(t, s, h)
                return
            if self._chain(t, s, h):
                return
        j = s.servers[h]
        if self.server_model == "serial":
            cost = s.comp_prefill_s[h] if s.done_tokens == 0 else s.comp_decode_s[h]
            busy = self.busy_until_s[j]
            done = (t if t > busy else float(busy)) + cost
            self.busy_until_s[j] = done
            self._step_done(done, s, h)
            return
        self._waiting[j].append((sid, h))
        if self._batch[j] is None and not self._start_pending[j]:
            self._start_at(t, j)

    def _start_at(self, t: float, j: int) -> None:
        """Schedule an iteration of server ``j`` at ``t`` (its waiting steps join it).  When every queued
        event is later than ``t``, the start event would be popped next: start it now instead."""
        if self._inline and not (self._events and self._events[0][0] <= t):
            self._seq += 1
            self._batch_start(t, j)
            return
        self._start_pending[j] = True
        self._push(t, BATCH_START, j, 0)

    def _chain(self, t: float, s: Session, h: int) -> bool:
        """Serve the step of hop ``h`` of ``s`` arriving at ``t`` and the session's following steps
        inline, without the event queue, as long as no other event could come first or interfere:

        * while the step (and, under ``batched``, its iteration) ends strictly before every queued
          event (the queue would pop them next anyway); or
        * while ``s`` is the only session holding its servers, strictly before every queued event that
          is neither a step nor an iteration (only those admit or release sessions, or are arrivals,
          i.e. decisions) and before the earliest possible end of any other session (its uncontended
          completion less a rounding margin: an end pushed later may admit a session onto ``s``'s
          servers).  Steps and iterations of other sessions run on other servers and cannot change
          ``s``'s times.

        ``serial``: the Lindley recursion of the event path (start = max(arrival, busy-until)).
        ``batched``: a step reaching an idle server runs as an iteration of one step, ending at
        t + overhead + :func:`batch_time_s` of that step.  Same float operations in the same order as
        the event path, so the records are identical; the session's end is still an event (memory
        release order).  Returns ``False`` (nothing done) when the first step must take the event path."""
        events, busy_until, servers = self._events, self.busy_until_s, s.servers
        serial = self.server_model == "serial"
        j = servers[h]
        if not serial and (self._batch[j] is not None or self._start_pending[j] or self._waiting[j]):
            return False                            # the server is busy: the step queues (event path)
        t0 = t
        # steps ending before `limit` are served inline: first the next queued event; once that is not
        # enough, the alone-session limit (if larger), computed at most once
        limit = events[0][0] if events else math.inf
        extended = False
        if not serial:
            batch, pending, waiting = self._batch, self._start_pending, self._waiting
            overhead = self.batched_step_overhead_s
        n = len(servers)
        first = True
        while True:
            j = servers[h]
            if serial:
                cost = s.comp_prefill_s[h] if s.done_tokens == 0 else s.comp_decode_s[h]
                busy = busy_until[j]
                done = (t if t > busy else float(busy)) + cost
                busy_until[j] = done
            else:
                if batch[j] is not None or pending[j] or waiting[j]:
                    break
                done = t + overhead + self._solo_work_s(s, h, j)
                if not (t < limit and done < limit):
                    if extended:
                        break
                    extended = True
                    limit = max(limit, self._alone_limit_s(s, t0))
                    if not (t < limit and done < limit):
                        break
                busy_until[j] = done
                self._seq += 2      # the iteration's start and end events
            first = False
            if h + 1 < n:
                h += 1
                t = done + (s.comm_prefill_s[h] if s.done_tokens == 0 else s.comm_decode_s[h])
            else:
                s.done_tokens += 1
                s.last_token_s = done
                if s.done_tokens == 1:
                    s.first_token_s = done
                    s.state = DECODE
                if s.done_tokens >= s.tokens:
                    s.completion_s = done
                    self._push(done, END, s.rid, 0)
                    return True
                h = 0
                t = done + s.client_token_s + s.comm_decode_s[0]
            if not t < limit:
                if extended:
                    break
                extended = True
                limit = max(limit, self._alone_limit_s(s, t0))
                if not t < limit:
                    break
            self._seq += 1          # the step's own push (keeps tie-break numbers increasing as before)
        if first:
            return False
        self._push(t, STEP, s.rid, h)
        return True

    def _serial_chain(self, t: float, s: Session, h: int) -> None:
        """:meth:`_chain` under ``serial`` (the same rules; a leaner loop: every step of a contended
        session goes through here)."""
        events, busy_until, servers = self._events, self.busy_until_s, s.servers
        comp = s.comp_prefill_s if s.done_tokens == 0 else s.comp_decode_s
        n = len(servers)
        limit = events[0][0] if events else math.inf
        t0, extended = t, False
        while True:
            j = servers[h]
            busy = busy_until[j]
            done = (t if t > busy else float(busy)) + comp[h]
            busy_until[j] = done
            if h + 1 < n:
                h += 1
                t = done + (s.comm_prefill_s[h] if s.done_tokens == 0 else s.comm_decode_s[h])
            else:
                s.done_tokens += 1
                s.last_token_s = done
                if s.done_tokens == 1:
                    s.first_token_s = done
                    s.state = DECODE
                    comp = s.comp_decode_s
                if s.done_tokens >= s.tokens:
                    s.completion_s = done
                    self._push(done, END, s.rid, 0)
                    return
                h = 0
                t = done + s.client_token_s + s.comm_decode_s[0]
            if not t < limit:
                if extended or len(self.holders[servers[0]]) != 1:     # (cheap pre-check of "alone")
                    break
                extended = True
                alone = self._alone_limit_s(s, t0)
                if not t < alone:
                    break
                limit = alone
            self._seq += 1          # the step's own push (keeps tie-break numbers increasing as before)
        self._push(t, STEP, s.rid, h)

    def _alone_limit_s(self, s: Session, t0: float) -> float:
        """The alone-session limit of :meth:`_chain` for ``s`` while processing an event at ``t0``
        (``-inf`` when another session holds one of its servers)."""
        if not self._alone_ok:
            return -math.inf
        holders = self.holders
        for j in s.servers:
            if len(holders[j]) != 1:
                return -math.inf
        control = self._control
        while control and control[0] < t0:        # popped already (the queue is processed in time order)
            heapq.heappop(control)
        limit = control[0] if control else math.inf
        bounds, sessions = self._end_bounds, self.sessions
        while bounds and sessions[bounds[0][1]].state == DONE:
            heapq.heappop(bounds)
        if bounds:
            if bounds[0][1] != s.rid:
                limit = min(limit, bounds[0][0])
            else:             # the second smallest of a heap is one of the root's children
                for k in (1, 2):
                    if k < len(bounds):
                        limit = min(limit, bounds[k][0])
        return limit

    def _step_done(self, done: float, s: Session, h: int) -> None:
        """Step of hop ``h`` finished at ``done``: schedule the next hop, or finish the token."""
        if h + 1 < len(s.servers):
            comm = s.comm_prefill_s[h + 1] if s.done_tokens == 0 else s.comm_decode_s[h + 1]
            self._push(done + comm, STEP, s.rid, h + 1)
            return
        s.done_tokens += 1
        s.last_token_s = done
        if s.done_tokens == 1:
            s.first_token_s = done
            s.state = DECODE
        if s.done_tokens >= s.tokens:
            s.completion_s = done
            self._push(done, END, s.rid, 0)
        else:
            self._push(done + s.client_token_s + s.comm_decode_s[0], STEP, s.rid, 0)

    def _batch_start(self, t: float, j: int) -> None:
        self._start_pending[j] = False
        batch, self._waiting[j] = self._waiting[j], []
        if not batch:
            return
        self._batch[j] = batch
        # end = (t + o) + max(weight-read, compute), summed in this order on purpose: t + (o + max) rounds
        # differently, and a step arriving one ulp before/after the boundary then joins a different batch
        # (hypothesis case in tests/test_live_reference.py; the exact rational sum sides with this order)
        if len(batch) == 1 and self._inline:
            work = self._solo_work_s(self.sessions[batch[0][0]], batch[0][1], j)
        else:
            work = batch_time_s(batch, self.sessions, self._tau[j], self._ftok, self._peak[j], 0.0)
        end = t + self.batched_step_overhead_s + work
        self.busy_until_s[j] = end
        self._push(end, BATCH_DONE, j, 0)

    def _batch_done(self, t: float, j: int) -> None:
        batch, self._batch[j] = self._batch[j], None
        for sid, h in batch:
            self._step_done(t, self.sessions[sid], h)
        if self._waiting[j] and not self._start_pending[j]:
            self._start_at(t, j)

    def _solo_work_s(self, s: Session, h: int, j: int) -> float:
        """:func:`batch_time_s` of an iteration made of the one step of hop ``h`` of ``s`` (cached per
        session, hop and phase; the same call, so the same value)."""
        key = (s.rid, h, s.done_tokens == 0)
        work = self._solo_s.get(key)
        if work is None:
            work = self._solo_s[key] = batch_time_s(((s.rid, h),), self.sessions, self._tau[j], self._ftok,
                                                    self._peak[j], 0.0)
        return work


__all__ = ["SteppingMixin"]
