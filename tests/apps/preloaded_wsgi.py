"""A WSGI app that makes its queuer at import time, as Django and Flask apps do.

Served by gunicorn --preload in the fork test: the queuer is made (and used)
in the master, then each forked worker adds a job per request.
"""

from __future__ import annotations

import json
import os

from queuer import new_queuer

q = new_queuer("web", 1)
q.add_job("record", "from the master before fork")  # the master's connections are open and used


def app(environ, start_response):
    job = q.add_job("record", environ.get("QUERY_STRING", ""), pid=os.getpid())
    body = json.dumps({"rid": str(job.rid), "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
