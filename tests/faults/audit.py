"""Reading a finished run: every job's outcome, money and posts from the database (either backend, through
tests/faults/database.py) and from what the Discord stand-in shows, into `Figures`."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.fakes.discord_server import FakeInteraction
from tests.fakes.seaart_server import FakeSeaArt
from tests.fakes.wavespeed_server import FakeWaveSpeed
from tests.faults.database import TERMINAL, DatabaseView, Row
from tests.faults.figures import Figures
from tests.faults.seen import about, carries_clip, shows_failure, shows_result, summary, told_privately
from tests.faults.standins import UploadRefusingDiscord


class Audit:
    """The promise, job by job: delivered or refunded and the user shown which, charged and posted at most
    once, the ledger balanced, no provider task without its job."""

    def __init__(self, figures: Figures, db: DatabaseView, discord: UploadRefusingDiscord) -> None:
        self.figures = figures
        self.db = db
        self.discord = discord

    def unseen(self) -> list[int]:
        """Jobs whose user has not been shown their outcome (yet)."""
        jobs = self.db.rows("SELECT id, status, interaction_id FROM jobs")
        return [int(job["id"]) for job in jobs if not self._user_saw_outcome(job)]

    def read(
        self,
        *,
        interactions: list[FakeInteraction],
        tmp_root: Path,
        killed_tags: set[str],
        log_lines: list[str],
        providers: tuple[FakeWaveSpeed, FakeSeaArt],
        task_faults: dict[int, str],
    ) -> None:
        f = self.figures
        jobs = self.db.jobs()
        f.started = len(jobs)
        unseen = set(self.unseen())
        for job in jobs:
            self._check_job(job, unseen)
        f.settled_micros = sum(int(job["settled"]) for job in jobs)
        f.delivered_cost_micros = sum(int(job["cost_micros"]) for job in jobs if job["status"] == "delivered")
        self._read_temp_files(tmp_root, killed_tags)
        self._read_provider_tasks(jobs, *providers)
        self._read_commands(interactions)
        for line in log_lines:
            if " ERROR " in line:  # "<date> <time> ERROR   <logger>: <message>", numbers stripped to group them
                f.errors_logged[re.sub(r"\d+", "N", line.split(" ERROR ", 1)[1].strip())[:80]] += 1
        for task in providers[0].tasks.values():
            if (name := task_faults.get(id(task.scenario), "ok")) != "ok":
                f.faults[f"task {name}"] += 1
        if self.discord.refused:
            f.faults["upload refused (413)"] = self.discord.refused

    def _read_temp_files(self, tmp_root: Path, killed_tags: set[str]) -> None:
        """Temporary files left anywhere under the data directory's tmp folder. With workers each process
        writes in a folder of its own (`<host>-<pid>`): what a SIGKILLed one left there is counted apart
        (no other process may take it at once; the sweeps take it when it is an hour old)."""
        files = sorted(path for path in tmp_root.rglob("*") if path.is_file())
        for path in files:
            name = str(path.relative_to(tmp_root))
            if path.parent.name in killed_tags:
                self.figures.temp_files_of_killed.append(name)
            else:
                self.figures.temp_files.append(name)

    def _user_saw_outcome(self, job: Row) -> bool:
        job_id, messages = int(job["id"]), self.discord.messages.values()
        if job["status"] == "delivered":
            return any(shows_result(m, job_id) for m in messages)
        if job["status"] in ("failed", "cancelled"):
            interaction = self.discord.interactions.get(int(job["interaction_id"] or 0))
            return any(shows_failure(m, job_id) for m in messages) or told_privately(interaction)
        return False

    def _check_job(self, job: Row, unseen: set[int]) -> None:
        f, job_id, status = self.figures, int(job["id"]), str(job["status"])
        if status not in TERMINAL:
            f.lost.append(f"#{job_id} never ended ({status})")
        elif job_id in unseen:
            f.lost.append(f"#{job_id} {status} but its user was never shown it")
        elif status == "delivered":
            f.delivered[str(job["delivered_as"])] += 1
            f.served_by[str(job["provider"])] += 1
        else:
            f.refunded[str(job["error_kind"] or status)] += 1
        self._check_money(job)
        interaction = self.discord.interactions.get(int(job["interaction_id"] or 0))
        self._check_posts(job, interaction)
        if job_id in unseen or job_id in {*f.posted_twice, *f.given_away, *f.misled}:
            f.trails[job_id] = self._trail(job_id, interaction)

    def _check_money(self, job: Row) -> None:
        """One reservation, then exactly the outcome row the status calls for, and nothing left reserved."""
        f, job_id, status = self.figures, int(job["id"]), str(job["status"])
        if job["settles"] + job["refunds"] > 1:
            f.charged_twice.append(job_id)
        expected = {"delivered": (1, 1, 0), "failed": (1, 0, 1), "cancelled": (1, 0, 1)}.get(status, (1, 0, 0))
        if (job["reserves"], job["settles"], job["refunds"]) != expected:
            f.outcome_mismatch.append(f"#{job_id} {status}: {job['reserves']} reserve, {job['settles']} settle, "
                                      f"{job['refunds']} refund")  # fmt: skip
        if job["reserved"] - job["settled"] - job["refunded"] - job["released"] != 0:
            f.unbalanced.append(job_id)

    def _check_posts(self, job: Row, interaction: FakeInteraction | None) -> None:
        """The clip is in the channel once, only for a delivered job, and never after "Nothing was charged"."""
        f, job_id, delivered = self.figures, int(job["id"]), job["status"] == "delivered"
        posts = sum(1 for m in self.discord.messages.values() if carries_clip(m, job_id))
        if posts > 1:
            f.posted_twice.append(job_id)
        if posts and not delivered:
            f.given_away.append(job_id)
        if delivered and told_privately(interaction):
            f.misled.append(job_id)

    def _trail(self, job_id: int, interaction: FakeInteraction | None) -> list[str]:
        receipt = interaction.original() if interaction is not None else None
        lines = [f"receipt: {receipt.content!r}"] if receipt is not None else []
        return lines + [summary(m) for m in self.discord.messages.values() if about(m, job_id)]

    def _read_provider_tasks(self, jobs: list[Row], wavespeed: FakeWaveSpeed, seaart: FakeSeaArt) -> None:
        """Every task created at a provider must belong to a job, except those of submits whose outcome the
        bot could not know (dropped, timed out, cut by a crash), and those jobs were refunded."""
        owned = {str(job["provider_task_id"]).rsplit(":", 1)[-1] for job in jobs if job["provider_task_id"]}
        created = {**{t: "wavespeed" for t in wavespeed.tasks}, **{t: "seaart" for t in seaart.tasks}}
        self.figures.provider_tasks = dict(Counter(created.values()))
        self.figures.orphan_tasks = sum(1 for task_id in created if task_id not in owned)
        self.figures.unknown_submits = sum(
            1 for job in jobs if job["tried_submit"] and not job["provider_task_id"] and job["status"] != "delivered"
        )

    def _read_commands(self, interactions: list[FakeInteraction]) -> None:
        f = self.figures
        f.commands = len(interactions)
        for interaction in interactions:
            original = interaction.original()
            content = original.content if original is not None else ""
            if "accepted" in content:
                f.accepted += 1
            elif "restarting" in content:
                f.turned_away += 1
            elif "Nothing was charged" in content:
                f.apologised += 1
            elif not content:
                f.unacknowledged += 1
