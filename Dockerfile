# hailuo-bot in two stages: the builder makes the virtualenv from wheels; the runtime stage gets that
# venv, one CJK font and the code, all owned by root and read-only to the bot's user (uid 10001), who can
# write only /app/data (the volume: the database, stored images, kept clips).
#
# One ffmpeg: the static build inside the imageio-ffmpeg wheel (requirements.txt, ~80 MB). Debian's
# ffmpeg package would add ~470 MB of codec, Mesa and LLVM libraries. media/ffmpeg.py prefers an ffmpeg
# on PATH and falls back to this one; the image has no other.
#
# The base is pinned by digest: python:3.11-slim (Python 3.11.16, Debian 13), the multi-platform index.
# To move to a newer one, `docker buildx imagetools inspect python:3.11-slim` and replace both digests.

FROM python:3.11-slim@sha256:a630a63cdb314e2d138a2fca3e375e319e8568346ffafac5b980f888630ac4f1 AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

# Wheels only (nothing is compiled, there is no compiler), no .pyc (the runtime sets
# PYTHONDONTWRITEBYTECODE), then out with what the bot never runs: pip, setuptools, the packages' tests.
COPY requirements.txt /build/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile --only-binary=:all: -r /build/requirements.txt \
    && /opt/venv/bin/pip uninstall -y -q pip setuptools \
    && find /opt/venv -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +

# The code, readable by all and writable by no one but root. Babel only reads the .po catalogues, so
# its CLDR data is cut to the languages that have one under locales/ (plus English and the root).
COPY . /build/app
RUN chmod -R u=rwX,go=rX /build/app \
    && /opt/venv/bin/python -c 'import babel, pathlib; \
keep = {"root", "en"} | {p.name.split("_")[0] for p in pathlib.Path("/build/app/locales").iterdir() if p.is_dir()}; \
data = pathlib.Path(babel.__file__).parent / "locale-data"; \
[f.unlink() for f in data.glob("*.dat") if f.stem.split("_")[0] not in keep]'


FROM python:3.11-slim@sha256:a630a63cdb314e2d138a2fca3e375e319e8568346ffafac5b980f888630ac4f1
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH

# The CJK font lets the preview renderer draw Chinese prompts (without it they show as empty boxes).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin hailuo

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /build/app /app
WORKDIR /app
RUN mkdir /app/data && chown hailuo:hailuo /app/data && chmod 0750 /app/data

USER hailuo
VOLUME ["/app/data"]
CMD ["python", "bot.py"]
