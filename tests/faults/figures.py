"""What a fault-injection run counted, the promise it checks (`Figures.problems`), and its printout."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.plan import SEED_ENV, RunSize


@dataclass
class Figures:
    seed: int
    size: RunSize
    elapsed_s: float = 0.0
    commands: int = 0
    accepted: int = 0
    turned_away: int = 0  # "the bot is restarting" receipts
    apologised: int = 0  # "Sorry, ... Nothing was charged" receipts
    unacknowledged: int = 0
    not_dispatched: int = 0  # sent as the bot stopped, after its gateway connection closed
    started: int = 0
    delivered: Counter[str] = field(default_factory=Counter)  # by how: file, reencoded, link
    served_by: Counter[str] = field(default_factory=Counter)  # delivered jobs by provider
    refunded: Counter[str] = field(default_factory=Counter)  # by error kind
    lost: list[str] = field(default_factory=list)
    charged_twice: list[int] = field(default_factory=list)
    outcome_mismatch: list[str] = field(default_factory=list)
    posted_twice: list[int] = field(default_factory=list)
    given_away: list[int] = field(default_factory=list)  # refunded, yet the clip is in the channel
    misled: list[int] = field(default_factory=list)  # told "Nothing was charged", yet charged
    settled_micros: int = 0
    delivered_cost_micros: int = 0
    unbalanced: list[int] = field(default_factory=list)  # reserve - settle - refund - release != 0
    temp_files: list[str] = field(default_factory=list)
    temp_files_of_killed: list[str] = field(default_factory=list)  # in the own folders of SIGKILLed processes
    provider_tasks: dict[str, int] = field(default_factory=dict)
    orphan_tasks: int = 0  # provider tasks no job owns
    unknown_submits: int = 0  # jobs that tried a submit, got no task id, and were refunded
    kills: int = 0
    terms: list[float] = field(default_factory=list)  # seconds from SIGTERM to exit
    term_failures: list[str] = field(default_factory=list)
    start_failures: list[str] = field(default_factory=list)  # starts on a sick database that did not end right
    restart_notices: tuple[int, int] = (0, 0)  # jobs in flight at SIGTERM told "restarting" / all of them
    untold: list[str] = field(default_factory=list)  # those not told, with their state then
    # Worker mode (`kills` and `terms` above are the gateway's):
    gateway_down_moves: tuple[int, int] = (0, 0)  # jobs in flight at a gateway stop that moved on while it was
    # down / all of them
    worker_kills: list[int] = field(default_factory=list)  # jobs the worker held at each SIGKILL
    worker_terms: list[float] = field(default_factory=list)  # seconds from a worker's SIGTERM to its exit
    worker_terms_held: list[int] = field(default_factory=list)  # jobs the worker held at each SIGTERM
    drained: tuple[int, int] = (0, 0)  # jobs held at a worker's SIGTERM that it ended before exiting / all
    taken_over: list[str] = field(default_factory=list)  # jobs taken from a worker told to stop, while it held them
    faults: Counter[str] = field(default_factory=Counter)
    trails: dict[int, list[str]] = field(default_factory=dict)  # what the channel shows of each problem job
    errors_logged: Counter[str] = field(default_factory=Counter)  # the bot's ERROR lines, by message
    workdir: Path | None = None

    @property
    def refunded_total(self) -> int:
        return sum(self.refunded.values())

    @property
    def delivered_total(self) -> int:
        return sum(self.delivered.values())

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"lost jobs: {self.lost}")
        if self.charged_twice:
            found.append(f"charged twice: jobs {self.charged_twice}")
        if self.outcome_mismatch:
            found.append(f"status and ledger disagree: {self.outcome_mismatch}")
        if self.posted_twice:
            found.append(f"posted twice: jobs {self.posted_twice}")
        if self.given_away:
            found.append(f"clip posted but refunded: jobs {self.given_away}")
        if self.misled:
            found.append(f"charged after the user was told nothing was charged: jobs {self.misled}")
        if self.settled_micros != self.delivered_cost_micros:
            found.append(f"settled {self.settled_micros} != cost of delivered jobs {self.delivered_cost_micros}")
        if self.unbalanced:
            found.append(f"money left reserved: jobs {self.unbalanced}")
        if self.temp_files:
            found.append(f"temporary files left: {self.temp_files}")
        if self.orphan_tasks > self.unknown_submits:
            found.append(f"{self.orphan_tasks} provider tasks owned by no job, only {self.unknown_submits} "
                         "submits of unknown outcome to explain them (a job was submitted twice)")  # fmt: skip
        if self.started != self.delivered_total + self.refunded_total + len(self.lost):
            found.append("started != delivered + refunded + lost")
        if self.drained[0] != self.drained[1]:
            found.append(f"a worker told to stop exited before ending the jobs it held ({self.drained[0]} of "
                         f"{self.drained[1]} ended)")  # fmt: skip
        if self.taken_over:
            found.append(f"jobs run by two workers at once: {self.taken_over}")
        found += self.term_failures + self.start_failures
        return found

    def render(self) -> str:
        usd = lambda micros: f"${micros / 1_000_000:,.2f}"  # noqa: E731
        balanced = self.settled_micros == self.delivered_cost_micros and not self.unbalanced
        lines = [
            f"fault-injection run, seed {self.seed} (replay: {SEED_ENV}={self.seed}), {self.elapsed_s:.0f} s",
            f"  commands sent        {self.commands} ({self.accepted} accepted, {self.turned_away} turned away "
            f"while restarting, {self.apologised} 'nothing was charged', {self.unacknowledged} unanswered; "
            f"{self.not_dispatched} more found the bot gone)",
            f"  jobs started         {self.started}",
            f"  delivered            {self.delivered_total} {_breakdown(self.delivered, self.served_by)}",
            f"  refunded             {self.refunded_total} {_breakdown(self.refunded)}",
            f"  lost                 {len(self.lost)}",
            f"  charged twice        {len(self.charged_twice)}",
            f"  posted twice         {len(self.posted_twice)}",
            f"  ledger balanced      {'yes' if balanced else 'NO'}: settled {usd(self.settled_micros)} = cost of "
            f"delivered jobs {usd(self.delivered_cost_micros)}; jobs with money still reserved: {len(self.unbalanced)}",
            f"  temp files left      {len(self.temp_files)}{self._of_killed()}",
            f"  provider tasks       {_breakdown(Counter(self.provider_tasks))}; owned by no job {self.orphan_tasks}"
            f" (submits of unknown outcome, refunded: {self.unknown_submits})",
            *(self._worker_restarts() if self.size.workers else self._restarts()),
            f"  faults injected      {sum(self.faults.values())} {_breakdown(self.faults)}",
            f"  ERROR lines in log   {sum(self.errors_logged.values())} {_breakdown(self.errors_logged)}",
        ]
        if self.workdir is not None:
            lines.append(f"  logs and plan        {self.workdir}")
        for job_id, trail in sorted(self.trails.items()):
            lines += [f"  job #{job_id} in the channel:", *(f"    {line}" for line in trail or ["(nothing)"])]
        return "\n".join(line.rstrip() for line in lines)

    def _of_killed(self) -> str:
        if not self.temp_files_of_killed:
            return ""
        return f" (and {len(self.temp_files_of_killed)} in the folders of SIGKILLed processes, for the hourly sweep)"

    def _restarts(self) -> list[str]:
        told, in_flight = self.restart_notices
        terms = ", ".join(f"{s:.1f} s" for s in self.terms) or "-"
        untold = "; not told: " + ", ".join(self.untold) if self.untold else ""
        return [
            f"  restarts             SIGKILL {self.kills}, SIGTERM {len(self.terms)} (exit after {terms}; "
            f"{told}/{in_flight} jobs in flight told{untold})"
        ]

    def _worker_restarts(self) -> list[str]:
        moved, in_flight = self.gateway_down_moves
        terms = ", ".join(f"{s:.1f} s" for s in self.terms) or "-"
        drains = ", ".join(f"{s:.1f} s" for s in self.worker_terms) or "-"
        killed_holding = ", ".join(map(str, self.worker_kills)) or "-"
        termed_holding = ", ".join(map(str, self.worker_terms_held)) or "-"
        return [
            f"  gateway restarts     SIGKILL {self.kills}, SIGTERM {len(self.terms)} (exit after {terms}); of the "
            f"jobs in flight, {moved}/{in_flight} moved on at a worker while it was down",
            f"  worker restarts      SIGKILL {len(self.worker_kills)} (jobs held: {killed_holding}), SIGTERM "
            f"{len(self.worker_terms)} (jobs held: {termed_holding}; exit after {drains}; ended "
            f"{self.drained[0]}/{self.drained[1]} of them first; taken over meanwhile {len(self.taken_over)})",
        ]


def _breakdown(*counts: Counter[str]) -> str:
    parts = [", ".join(f"{name} {n}" for name, n in sorted(c.items())) for c in counts if c]
    return f"({'; '.join(parts)})" if parts else ""
