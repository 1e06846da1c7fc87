"""Invariants of the cost model and of static batching (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.rules import static_placement
from hardware.systems import CostModel
from sim.static import run_batch

MODELS = {name: {s: CostModel(s, name) for s in ("papi", "attacc_only", "gpu_only")}
          for name in ("llama-65b", "gpt3-175b")}
# The GPU GEMM model's tile/padding choice ripples: time under 1%, energy under 3% (the padding is
# chosen for time; a neighbouring shape may take a tile with more L2 traffic). PIM is exact.
GPU_RIPPLE = 1.01
GPU_ENERGY_RIPPLE = 1.03

model_names = st.sampled_from(sorted(MODELS))
systems = st.sampled_from(["papi", "attacc_only", "gpu_only"])
rlps = st.integers(1, 128)
tlps = st.integers(1, 8)
ctx = st.floats(0, 2e5)


def units(cm):
    return st.sampled_from(list(cm.fc_units))


@settings(max_examples=60, deadline=None)
@given(model_names, systems, rlps, tlps, ctx, st.data())
def test_time_and_energy_positive_and_finite(model, system, rlp, tlp, sum_ctx, data):
    cm = MODELS[model][system]
    it = cm.iteration(rlp, tlp, sum_ctx, data.draw(units(cm)))
    assert all(np.isfinite(v) and v >= 0 for v in it)
    assert it.time > 0 and it.energy > 0


@settings(max_examples=60, deadline=None)
@given(model_names, systems, rlps, tlps, ctx, st.data())
def test_monotone_in_rlp_tlp_and_context(model, system, rlp, tlp, sum_ctx, data):
    # More work never costs less: one more request (with the batch's mean context), one more
    # token per request, more context. (One more request with *no* added context may cost less:
    # PIM attention maps each request's heads to their own channels, so the same context spread
    # over more requests runs with more parallelism.)
    cm = MODELS[model][system]
    unit = data.draw(units(cm))
    base = cm.iteration(rlp, tlp, sum_ctx, unit)
    more_requests = cm.iteration(rlp + 1, tlp, sum_ctx * (rlp + 1) / rlp, unit)
    for bigger in (more_requests, cm.iteration(rlp, tlp + 1, sum_ctx, unit),
                   cm.iteration(rlp, tlp, sum_ctx + 100, unit)):
        assert bigger.time * GPU_RIPPLE >= base.time
        assert bigger.energy * GPU_ENERGY_RIPPLE >= base.energy


lengths = st.lists(st.tuples(st.integers(1, 300), st.integers(1, 400)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(lengths, tlps, st.one_of(st.none(), st.floats(0.05, 1.0)), st.integers(0, 2**31))
def test_tokens_conserved_and_rlp_shrinks(reqs, tlp, acceptance, seed):
    lin, lout = zip(*reqs, strict=True)
    seen = []  # (rlp, tlp, context sum) the placement sees each iteration

    def placement(rlp, t, sum_ctx, it):
        seen.append((rlp, t, sum_ctx))
        return "pim"

    r = run_batch(MODELS["llama-65b"]["papi"], lin, lout, tlp, placement, acceptance, seed, include_prefill=False)
    assert r.tokens == sum(lout)
    rlps = [s[0] for s in seen]
    assert rlps[0] == len(lin) and all(b <= a for a, b in zip(rlps, rlps[1:], strict=False))
    assert all(ctx >= rlp * (1 + t) for rlp, t, ctx in seen)  # every live request: a prompt token and TLP
    assert r.iterations == len(seen) >= -(-max(lout) // tlp)  # at most TLP tokens per request an iteration
    if acceptance is None:
        assert r.iterations == -(-max(lout) // tlp)


def test_accept_all_iteration_count():
    r = run_batch(MODELS["llama-65b"]["papi"], [5, 5, 5], [10, 3, 7], 4, static_placement("pim"))
    assert r.iterations == 3  # ceil(max output / TLP)


def test_batch_result_breakdown_sums_to_total():
    cm = MODELS["llama-65b"]["papi"]
    r = run_batch(cm, [10, 20, 30, 40], [50, 100, 150, 400], 2, static_placement("pim"))
    assert r.tokens == 700
    assert sum(r.breakdown_time.values()) == __import__("pytest").approx(r.time)
    assert sum(r.breakdown_energy.values()) == __import__("pytest").approx(r.energy)
    assert r.prefill_time > 0
