"""gunicorn settings of the web processes, as measured by bench/serving.py.

    gunicorn shop_recs.wsgi -c gunicorn.conf.py      (the image and docker-compose.yml do this)

Each can be overridden on the command line or by the environment variables below.
"""
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# One worker per core, one thread each: a request is CPU-bound Python under one GIL (the
# policy, the index, JSON), so more threads per worker add no throughput, only queueing inside
# the process; ``gthread`` (not ``sync``) keeps the shop's connections alive between requests.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = 1
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "30"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# gunicorn_h1c (the server extra) parses requests in C when installed; pure Python otherwise.
http_parser = "auto"
