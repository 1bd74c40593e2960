# One image for the web process, the Celery worker and Celery beat.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY recommender ./recommender
COPY setup.py ./
# The CPU build of torch first, so that the ml extra does not pull a CUDA build. gcc builds the
# policy's compiled greedy fill (recommender/ranking/_greedy.c) and is removed again; the install
# is editable so that the module lands next to the sources the processes import from /app.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -e '.[ml,server]' \
    && python -c "from recommender.ranking.policy import ACCELERATED; assert ACCELERATED" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY manage.py gunicorn.conf.py ./
COPY shop_recs ./shop_recs
COPY templates ./templates
RUN DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput

EXPOSE 8000
CMD ["gunicorn", "shop_recs.wsgi", "-c", "gunicorn.conf.py"]
