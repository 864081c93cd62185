"""The pool: a corpus of texts that lives beside Label Studio, not in it.

A project's pool (:mod:`labelloop.pool.corpus`) holds millions of texts as Parquet shards with stable ids; the
project's model scores all of it on an engine (:mod:`labelloop.pool.scoring`: in this process, or Ray Data on
one machine or a cluster), with results written beside the pool and resumed shard by shard; and Label Studio
holds only the working set annotators need now (:mod:`labelloop.pool.working_set`), refilled from the scores
by the backend as annotators drain it, or by ``labelloop pool refill``.
"""
