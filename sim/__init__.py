"""The simulation layer: what decoding does, between the cost model (hardware/) and the MDPs (papi_env/).

Usable on its own: imports numpy and hardware/ only (no gymnasium, no torch).

- :mod:`sim.batches`: N static batches as arrays (who is live, how long each context is, one iteration).
- :mod:`sim.acceptance`: speculative decoding's accepted drafts (the one formula) and the drifting
  per-request acceptance process.
- :mod:`sim.random_streams`: counter-based draws, the same whether N batches step together or apart.
- :mod:`sim.static`: one static batch decoded to its end under a placement rule (the paper's runs).
- :mod:`sim.online`: continuous batching with arrivals, KV capacity and latency (online serving).
"""
