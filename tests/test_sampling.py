"""Sampler contracts: which archs, how many, on which rows, in how many passes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vitnas.train.recipe import SamplerConfig
from vitnas.train.samplers import build_sampler, step_rng


def plan_of(space, name, batch=64, distill=True, **options):
    return build_sampler(space, SamplerConfig(name=name, **options), distill).plan(step_rng(0, 5), batch)


def test_single_trains_one_random_arch_on_the_whole_batch(spaces):
    plan = plan_of(spaces["tiny32"], "single")
    assert len(plan) == 1 and len(plan[0].pieces) == 1
    piece = plan[0].pieces[0]
    assert (piece.start, piece.stop, piece.role) == (0, 64, "supervised")
    spaces["tiny32"].validate(piece.arch)


def test_sandwich_is_largest_then_smallest_then_random(spaces):
    space = spaces["resnas"]
    plan = plan_of(space, "sandwich", num_random=3)
    assert len(plan) == 5 and all(len(p.pieces) == 1 for p in plan)
    first, second = plan[0].pieces[0], plan[1].pieces[0]
    assert first.arch == space.largest() and first.role == "supervised" and first.teacher
    assert second.arch == space.smallest() and second.role == "distilled"
    assert all(p.pieces[0].role == "distilled" and (p.pieces[0].start, p.pieces[0].stop) == (0, 64) for p in plan[1:])
    assert all(p.pieces[0].role == "supervised" for p in plan_of(space, "sandwich", distill=False))


def test_multi_splits_the_batch_in_one_pass(spaces):
    space = spaces["tiny32"]
    plan = plan_of(space, "multi", batch=50, subnets=4)
    assert len(plan) == 1
    pieces = plan[0].pieces
    learners = [p for p in pieces if p.role != "teacher"]
    assert [(p.start, p.stop) for p in learners] == [(0, 12), (12, 25), (25, 38), (38, 50)]
    assert learners[0].arch == space.largest() and learners[0].role == "supervised"
    assert all(p.role == "distilled" for p in learners[1:])
    teacher = [p for p in pieces if p.role == "teacher"]
    assert len(teacher) == 1 and (teacher[0].start, teacher[0].stop) == (12, 50) and teacher[0].arch == space.largest()
    shapes = {(p.arch.img_size, p.arch.patch_size) for p in learners[1:]}
    assert len(shapes) == 1  # shared token shape across the random sub-batches
    assert plan_of(space, "multi", subnets=4, variant="masked")[0].masked


def test_supervit_four_configurations(spaces):
    space = spaces["deit"]
    plan = plan_of(space, "supervit")
    roles = [(p.pieces[0].role, p.pieces[0].teacher) for p in plan]
    assert roles == [("supervised", True), ("distilled", False), ("supervised", True), ("distilled", False)]
    full, full_reduced, coarse, coarse_reduced = (p.pieces[0].arch for p in plan)
    assert full == space.largest()
    assert coarse.patch_size != full.patch_size and coarse.stages == full.stages  # same width and depth, keep 1
    # Each student is its teacher with one keep rate below 1 at every reduction block, nothing else changed.
    blocks = space.stages[0].token_reduction.blocks
    for teacher, student in ((full, full_reduced), (coarse, coarse_reduced)):
        assert (student.img_size, student.patch_size) == (teacher.img_size, teacher.patch_size)
        rates = student.stages[0].keep_rate
        assert {rates[b] for b in blocks} < {0.5, 0.7} and len({rates[b] for b in blocks}) == 1
        assert all(rate == 1.0 for i, rate in enumerate(rates) if i not in blocks)
        assert student.stages == tuple(replace(t, keep_rate=rates) for t in teacher.stages)


@pytest.mark.parametrize("name", ["single", "sandwich", "multi", "supervit"])
def test_plans_repeat_for_the_same_seed_and_step(spaces, name):
    space = spaces["resize3"]
    first = build_sampler(space, SamplerConfig(name=name), True).plan(step_rng(3, 17), 32)
    again = build_sampler(space, SamplerConfig(name=name), True).plan(step_rng(3, 17), 32)
    other = [build_sampler(space, SamplerConfig(name=name), True).plan(step_rng(3, s), 32) for s in range(18, 24)]
    assert first == again
    if name != "supervit" or len(space.spec.patch.img_sizes) > 2:
        assert any(plan != first for plan in other)
