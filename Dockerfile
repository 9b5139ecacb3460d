# Slim image, non-root user, the database and stored inputs on a volume (/app/data).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# ffmpeg from Debian keeps the image smaller than the one bundled in imageio-ffmpeg, and the bot
# prefers a system ffmpeg when one is on PATH. The CJK font lets the preview renderer draw Chinese
# prompts (without it they show as empty boxes).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 hailuo

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=hailuo:hailuo . .
RUN mkdir -p /app/data && chown hailuo:hailuo /app/data

USER hailuo
VOLUME ["/app/data"]
CMD ["python", "bot.py"]
