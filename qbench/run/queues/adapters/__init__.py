"""Client-level adapters for queue libraries people run on SQLite (``pip install 'qbench[queues]'``).

Each module imports its library at the top, so it is imported only when its
queue is asked for (:mod:`qbench.run.queues.loading`): a missing library is
one line naming the extra, before anything runs.
"""
