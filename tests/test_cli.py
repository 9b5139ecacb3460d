"""`bot.py generate` against the free preview provider: parity with the commands (model, end image,
camera, variants), progress on stderr, where the clips go, and one-sentence refusals."""

from __future__ import annotations

import io
import logging
import re
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from cli import END_FRAME_NEEDS_02, Progress, terminal_console
from services.progress import JobCard
from tests.test_entrypoint import ROOT, run_bot

PREVIEW = '[bot]\ndata_dir = "data"\n[providers.preview]\nfps = 8\n'
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")
CLI_LINE = re.compile(r"^(job #\d+: |prompt: |variant \d+: )")


def stored_prompts(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "data" / "hailuo.db") as db:
        return [row[0] for row in db.execute("SELECT prompt FROM jobs ORDER BY id")]


def one_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_variants_make_one_clip_each_with_the_camera_moves_in_the_prompt(tmp_path: Path) -> None:
    result = run_bot(tmp_path, PREVIEW, "generate", "--prompt", "a paper boat", "--camera", "pan left, tilt up",
                     "--variants", "2", "--out", "boat.mp4")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("boat-1.mp4", "boat-2.mp4"):
        assert (tmp_path / name).read_bytes()[4:8] == b"ftyp"
    assert not (tmp_path / "boat.mp4").exists()
    # Two jobs, each reserved on its own, with the moves as a canonical bracket (the preview renders them).
    assert stored_prompts(tmp_path) == ["[Pan left,Tilt up] a paper boat"] * 2
    assert "prompt: [Pan left,Tilt up] a paper boat" in result.stderr
    assert "job #1: preview, $0.00" in result.stderr and "job #2: preview, $0.00" in result.stderr


def test_the_default_output_is_in_the_data_folder_not_the_working_directory(tmp_path: Path) -> None:
    result = run_bot(tmp_path, PREVIEW, "generate", "--prompt", "a lighthouse")
    assert result.returncode == 0, result.stderr
    clips = list((tmp_path / "data" / "clips").glob("*-1.mp4"))
    assert len(clips) == 1 and re.fullmatch(r"\d{8}-\d{6}-1\.mp4", clips[0].name)
    assert f"saved {clips[0]}" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.toml", "data"]


def test_the_data_folder_is_ignored_by_git() -> None:
    assert "data/" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_a_variant_refused_by_the_quota_does_not_stop_the_others(tmp_path: Path) -> None:
    config = PREVIEW + "[quotas]\nuser_daily_videos = 1\n"
    result = run_bot(tmp_path, config, "generate", "--prompt", "a kite", "--variants", "2", "--out", "kite.mp4")
    assert result.returncode == 1
    assert (tmp_path / "kite-1.mp4").exists() and not (tmp_path / "kite-2.mp4").exists()
    assert "variant 2: You have used your 1 videos for today." in result.stderr
    assert "1 of 2 variants did not finish: variant 2 (not started)." in result.stderr
    assert "Traceback" not in result.stderr


def test_variants_beyond_the_in_flight_limit_wait_their_turn(tmp_path: Path) -> None:
    config = PREVIEW + "[quotas]\nuser_max_in_flight = 1\n"
    result = run_bot(tmp_path, config, "generate", "--prompt", "a kite", "--variants", "2", "--out", "kite.mp4")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kite-1.mp4").exists() and (tmp_path / "kite-2.mp4").exists()
    assert "variant 2: waits for another to finish" in result.stderr


def test_an_end_image_is_refused_for_a_model_that_cannot_take_it_as_the_command_does(tmp_path: Path) -> None:
    first, last = tmp_path / "first.png", tmp_path / "last.png"
    Image.new("RGB", (640, 480), "red").save(first)
    Image.new("RGB", (640, 480), "blue").save(last)
    result = run_bot(tmp_path, PREVIEW, "generate", "--image", "first.png", "--end-image", "last.png",
                     "--model", "hailuo-2.3")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == END_FRAME_NEEDS_02
    source = (ROOT / "cogs" / "generate.py").read_text(encoding="utf-8")
    assert f'END_FRAME_NEEDS_02 = N_("{END_FRAME_NEEDS_02}")' in source
    assert not (tmp_path / "data" / "clips").exists() or not any((tmp_path / "data" / "clips").iterdir())


def test_first_and_last_frame_with_hailuo_02(tmp_path: Path) -> None:
    Image.new("RGB", (640, 480), "red").save(tmp_path / "first.png")
    Image.new("RGB", (640, 480), "blue").save(tmp_path / "last.png")
    result = run_bot(tmp_path, PREVIEW, "generate", "--image", "first.png", "--end-image", "last.png",
                     "--model", "hailuo-02", "--out", "clip.mp4")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "clip.mp4").read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (("--image", "missing.png"), "--image: no such file: missing.png", 1),
        (
            ("--image", "first.png", "--end-image", "gone.png", "--model", "hailuo-02"),
            "--end-image: no such file: gone.png",
            1,
        ),
        (("--image", "notes.png"), "--image notes.png: This file looks like a text file", 1),
        (("--prompt", "x", "--camera", "pann left"), "`[pann left]` is not a camera directive. Did you mean", 1),
        (
            ("--prompt", "x", "--model", "hailuo-02", "--image", "first.png", "--quality", "fast"),
            "Hailuo 02 does not offer quality `fast`.",
            1,
        ),
        (("--prompt", "x", "--out", "nowhere/clip.mp4"), "--out: no such folder: nowhere", 1),
        (("--prompt", "x", "--variants", "5"), "argument --variants: choose 1 to 4 clips, not '5'", 2),
        (("--prompt", "x", "--model", "sora"), "argument --model: invalid choice: 'sora'", 2),
    ],
)
def test_a_bad_file_or_option_is_one_sentence(tmp_path: Path, args: tuple[str, ...], expected: str, code: int) -> None:
    Image.new("RGB", (640, 480), "red").save(tmp_path / "first.png")
    (tmp_path / "notes.png").write_text("not an image\n", encoding="utf-8")
    result = run_bot(tmp_path, PREVIEW, "generate", *args)
    assert result.returncode == code
    assert expected in result.stderr and "Traceback" not in result.stderr
    if code == 1:
        one_sentence(result.stderr)
    else:  # argparse: the usage, then one line with the error
        assert result.stderr.strip().splitlines()[-1].startswith("bot.py generate: error: ")


def test_progress_without_a_terminal_is_one_line_per_stage_and_never_splits_a_log_line(tmp_path: Path) -> None:
    result = run_bot(tmp_path, PREVIEW, "generate", "--prompt", "a paper boat", "--variants", "2", "--verbose",
                     "--out", "boat.mp4")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(LOG_LINE.match(line) or CLI_LINE.match(line) for line in lines), result.stderr
    assert any(LOG_LINE.match(line) for line in lines)  # --verbose: the INFO lines are there, whole
    for job in (1, 2):
        stages = [line for line in lines if re.fullmatch(rf"job #{job}: [a-z]+", line)]
        assert stages[0] == f"job #{job}: queued" and len(stages) == len(set(stages))
        assert f"job #{job}: saved boat-{job}.mp4" in result.stderr


def test_without_verbose_a_run_logs_only_warnings(tmp_path: Path) -> None:
    result = run_bot(tmp_path, PREVIEW, "generate", "--prompt", "a paper boat", "--out", "boat.mp4")
    assert result.returncode == 0, result.stderr
    assert not any(LOG_LINE.match(line) for line in result.stderr.splitlines()), result.stderr


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def card(job_id: int, stage: str, **changes: object) -> JobCard:
    base = JobCard(job_id, "queued", "p", "video", "hailuo-2.3", "standard", "768P", 6, 0, "preview", 0)
    return base.with_stage(stage, **changes)  # type: ignore[arg-type]


def test_on_a_terminal_the_progress_is_one_line_and_a_log_record_clears_it_first() -> None:
    stream = FakeTty()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.addHandler(handler)
    try:
        with terminal_console(verbose=False, stream=stream) as progress:
            progress.update(card(1, "queued"))
            progress.update(card(2, "generating", percent=40))
            logging.getLogger("test").warning("provider slow")
            logging.getLogger("test").info("not shown")
            progress.update(card(1, "posting"))
        assert handler.stream is stream and handler.level == logging.NOTSET
    finally:
        root.removeHandler(handler)
    screen = stream.getvalue()
    assert "not shown" not in screen
    assert screen == (
        "\r\x1b[K#1 queued"
        "\r\x1b[K#1 queued · #2 generating ~40%"
        "\r\x1b[KWARNING provider slow\n"  # cleared first, then the bar again below it
        "\r\x1b[K#1 queued · #2 generating ~40%"
        "\r\x1b[K#1 posting · #2 generating ~40%"
        "\r\x1b[K"  # cleared at the end
    )


def test_without_a_terminal_only_stage_changes_are_printed() -> None:
    stream = io.StringIO()
    progress = Progress(stream, tty=False)
    progress.update(card(1, "generating", percent=10))
    progress.update(card(1, "generating", percent=20))
    progress.update(card(1, "failed", message="The provider refused the prompt."))
    assert stream.getvalue() == "job #1: generating ~10%\njob #1: failed: The provider refused the prompt.\n"
