"""Input images kept on disk (content-addressed), so a re-roll or a restart can send them again, and
the stored job turned back into the request it was."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import cast

from PIL import Image, ImageOps

from core.jobs import JobRecord
from core.spec import GenerationSpec, ImageInput, Mode, Quality
from services.images import inspect_image

THUMBNAIL_PX = 256  # the long side of the input image shown on a finished card


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

    def thumbnail(self, name: str | None) -> bytes | None:
        """A small JPEG (long side at most THUMBNAIL_PX) of a stored input image, made once and kept beside
        it; None when there is no such image. The image passed the intake checks, so decoding it is safe."""
        if not name:
            return None
        path = self.folder / f"{name}.thumb.jpg"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        with Image.open(self.folder / name) as image:
            small = ImageOps.exif_transpose(image).convert("RGB")
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            small.save(buffer, "JPEG", quality=80)
        data = buffer.getvalue()
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
        return data
