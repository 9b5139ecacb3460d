"""Input images kept on disk (content-addressed), so a re-roll or a restart can send them again, and
the stored job turned back into the request it was."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import cast

from core.jobs import JobRecord
from core.spec import GenerationSpec, ImageInput, Mode, Quality
from services.images import inspect_image


class InputImages:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def keep(self, image: ImageInput) -> str:
        """Store the validated image under the hash of its bytes; returns its name."""
        name = f"{hashlib.sha256(image.data).hexdigest()}.{image.extension}"
        path = self.folder / name
        if not path.exists():
            partial = path.with_suffix(".part")
            partial.write_bytes(image.data)
            partial.replace(path)
        return name

    def load(self, name: str | None) -> ImageInput | None:
        """The stored image, checked again (the file is ours, but may have been damaged since).
        Raises OSError when it is gone, UserError when it no longer passes the checks."""
        if not name:
            return None
        return inspect_image((self.folder / name).read_bytes())

    def spec_for(self, job: JobRecord) -> GenerationSpec:
        """Rebuild what the member asked for from the stored job (for re-roll and resume)."""
        return GenerationSpec(
            mode=cast(Mode, job.mode),
            quality=cast(Quality, job.quality),
            duration=job.duration,
            prompt=job.prompt,
            optimize_prompt=job.optimize_prompt,
            model=job.model,
            image=self.load(job.input_image),
            end_image=self.load(job.end_image),
        )
