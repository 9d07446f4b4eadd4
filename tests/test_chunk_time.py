"""Chunks of the host loop are bounded by time, not steps: a signal (checked between chunks) takes
effect within about TARGET_SECONDS for every model, however slow its steps. Timed with a scripted
clock, not the wall clock."""

import types

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxrecon.attack import driver
from jaxrecon.attack.progress import GROWTH, TARGET_SECONDS, UNTIMED_SLOWDOWN, ChunkSizer
from jaxrecon.features.network import network_target
from jaxrecon.models.train import split_model
from jaxrecon.models.two_layer import TwoLayer

FO, LM = frozenset({0}), frozenset({1})


def test_first_chunk_is_one_step_then_grows_by_time():
    s = ChunkSizer(cap=250, phases=1, target=2.0)
    assert s.next() == 1
    s.timed(1, 0.5, FO)  # the first pays one-time costs: counted as the step's
    assert s.next() == GROWTH  # 2 s / 0.5 s
    s.timed(4, 4 * 0.001, FO)
    assert [s.next() for _ in range(3)] == [16, 64, 250]  # never past the configured chunk
    s.timed(250, 250 * 1.0, FO)  # steps got slow: two a chunk
    assert s.next() == 2
    s.timed(2, 2 * 30.0, FO)  # one step over the target: one step a chunk
    assert s.next() == 1


def test_a_slow_models_chunks_stay_one_step():
    # a ResNet step of 8 s: the old sizer took the one-step probes for a fixed overhead above its
    # 6 s target and grew to the full 250-step chunk (half an hour between two signal checks)
    s = ChunkSizer(cap=250, phases=1)
    for _ in range(20):
        k = s.next()
        assert k == 1
        s.timed(k, 8.0 * k + 0.01, FO)


def test_an_untimed_costlier_phase_is_planned_for():
    s = ChunkSizer(cap=10_000, phases=2, target=2.0)
    assert s.next() == 1
    s.timed(1, 0.01, FO)
    sizes = [s.next() for _ in range(4)]
    # while LM is untimed a chunk is planned as if its steps were UNTIMED_SLOWDOWN times slower
    assert sizes == [4, 16, 25, 25] and 25 == int(2.0 / (0.01 * UNTIMED_SLOWDOWN))
    s.timed(25, 25 * 0.08, FO | LM)  # a mixed chunk: at least that for LM
    s.timed(25, 25 * 0.2, LM)  # LM timed: 0.2 s a step
    assert s.next() == int(2.0 / 0.2)


def _tiny_network_target():
    model = TwoLayer(4, 9, 1, rngs=nnx.Rngs(0), param_dtype=jnp.float32)
    apply, before = split_model(model)
    after = jax.tree_util.tree_map(lambda a: a + 0.05 * jnp.ones_like(a), before)
    return network_target(apply, before, after, 4, 1, "head")


@pytest.mark.parametrize("step_seconds", [8.0, 0.3, 0.004])
def test_network_chunks_stay_under_the_time_bound(monkeypatch, step_seconds):
    """The host loop on a tiny network target, its clock scripted so that a step takes
    ``step_seconds``: every chunk ends within max(TARGET_SECONDS, one step) of its start."""
    target = _tiny_network_target()
    steps = 60
    program = driver.build_program(target, jax.random.key(0), 2, 1, "adam", steps, "sphere")
    clock = types.SimpleNamespace(now=0.0)
    sizes, done = [], [0]

    def advance(tgt, state, max_steps):
        size = int(max_steps) - done[0]
        done[0] = int(max_steps)
        sizes.append(size)
        clock.now += step_seconds * size
        return program.advance(tgt, state, max_steps)

    monkeypatch.setattr(driver, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    state, _, interrupted = driver.run_chunks(program._replace(advance=advance), steps, 250, 0.0, progress=False)
    assert not interrupted and sum(sizes) <= steps
    assert sizes[0] == 1
    longest = max(sizes) * step_seconds
    assert longest <= max(TARGET_SECONDS, step_seconds) + 1e-9
    if step_seconds >= TARGET_SECONDS:
        assert set(sizes) == {1}
    if step_seconds < 0.01 and sum(sizes) == steps:
        assert max(sizes) > GROWTH  # fast steps: chunks do grow
