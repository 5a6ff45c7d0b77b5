# One image for the web, worker and scheduler processes (see docker-compose.yml and Procfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY webhooks ./webhooks
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 relay
USER relay
EXPOSE 8000
CMD ["isograd-relay", "web", "--host", "0.0.0.0", "--port", "8000"]
