"""gunicorn settings of the web processes, as measured by bench/serving.py.

    gunicorn shop_recs.wsgi -c gunicorn.conf.py      (the image and docker-compose.yml do this)

Each can be overridden on the command line or by the environment variables below
(GUNICORN_BIND, WEB_CONCURRENCY, GUNICORN_KEEPALIVE, GUNICORN_TIMEOUT, GUNICORN_PIN_WORKERS).
"""
import multiprocessing
import os
import sys

# The project root, whatever starts gunicorn (its console script puts its own directory first).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shop_recs import affinity  # noqa: E402

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

# Each worker on a core of its own (shop_recs/affinity.py says what it measured); the core is
# chosen in the arbiter, which knows the other workers' cores, and set in the new worker.
# GUNICORN_PIN_WORKERS=0 leaves the scheduler free to move the workers.
_cores = affinity.usable_cores()
_pin_setting = os.environ.get("GUNICORN_PIN_WORKERS")
affinity.should_pin(_pin_setting, workers, len(_cores))  # a value it does not understand stops the start


def pre_fork(server, worker):
    # server.num_workers: the count in force, whether from here or from the command line
    if affinity.should_pin(_pin_setting, server.num_workers, len(_cores)):
        worker.pinned_core = affinity.pick_core(
            _cores, (getattr(w, "pinned_core", None) for w in server.WORKERS.values()))


def post_fork(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    core = getattr(worker, "pinned_core", None)
    if core is not None:
        os.sched_setaffinity(0, {core})  # the threads it starts later inherit it
